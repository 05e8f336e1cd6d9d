"""Pair each treatment arm with its control, compute their statistics, and write the table."""
import csv
import io
import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..robustness.metrics import is_robustness
from ..experiment import CONTROL, arm_order
from .format import arch_name, arm_text, num
from .runs import Run
from .stats import Gain, gain, summarize

NO_RUNS = 'an arm has no runs'

DEFAULT_METRICS = {'classification': ['accuracy/top1', 'accuracy/top5'],
                   'segmentation': ['mIoU'], 'detection': ['coco/bbox_mAP', 'coco/segm_mAP']}
# Public numbers for plain arms (docs/design.md, "Reference numbers"): mmseg's model zoo (UPerNet
# + DeiT, ADE20K, single scale) and ViT-Adapter's plain-ViT Mask R-CNN 3x + MS baselines (DeiT).
REFERENCES = {
    ('ADE20K', 'UPerNet', 'deit_small_patch16_224', '160k', 'mIoU'): 42.87,
    ('ADE20K', 'UPerNet', 'deit_base_patch16_224', '160k', 'mIoU'): 45.36,
    ('ADE20K', 'UPerNet', 'deit_small_patch16_224', '80k', 'mIoU'): 42.96,
    ('ADE20K', 'UPerNet', 'deit_base_patch16_224', '80k', 'mIoU'): 45.24,
    ('COCO', 'MaskRCNN', 'deit_tiny_patch16_224', '36e', 'coco/bbox_mAP'): 40.2,
    ('COCO', 'MaskRCNN', 'deit_tiny_patch16_224', '36e', 'coco/segm_mAP'): 37.0,
    ('COCO', 'MaskRCNN', 'deit_small_patch16_224', '36e', 'coco/bbox_mAP'): 44.0,
    ('COCO', 'MaskRCNN', 'deit_small_patch16_224', '36e', 'coco/segm_mAP'): 39.9,
    ('COCO', 'MaskRCNN', 'deit_base_patch16_224', '36e', 'coco/bbox_mAP'): 45.8,
    ('COCO', 'MaskRCNN', 'deit_base_patch16_224', '36e', 'coco/segm_mAP'): 41.3,
}


# What each protocol compares (cb_transfer.suite.plan): never two of them in one row.
PROTOCOLS = {
    'pretraining': 'ImageNet pretraining of every arm from scratch with one recipe',
    'two-stage': 'each arm fine-tuned from its own ImageNet checkpoint, all pretrained with one '
                 'recipe (the paper\'s protocol)',
    'zoo-pair': 'each arm fine-tuned from its own published checkpoint, the checkpoints of one '
                'recipe (not pretrained here)',
    'cb-at-finetune': 'every arm fine-tuned from the same plain checkpoint, the change switched '
                      'on at fine-tuning',
    'zoo-check': 'a plain arm from a public checkpoint, to check the recipe against the model zoo '
                 '(not a CB comparison)',
    'from-scratch': 'every arm fine-tuned without pretraining',
}
PROTOCOLS_TEXT = '; '.join(f'{k}: {v}' for k, v in PROTOCOLS.items()) + '.'


@dataclass
class Row:
    task: str
    dataset: str
    model: str
    arch: str
    schedule: str
    arm: str
    metric: str
    selection: str
    control_n: int
    control_mean: Optional[float]
    control_std: Optional[float]
    treatment_n: int
    treatment_mean: Optional[float]
    treatment_std: Optional[float]
    reference: Optional[float]
    protocol: str = ''
    control_weights: str = ''     # where each arm's backbone started: file (sha256[:8]) or scratch
    treatment_weights: str = ''
    control_seeds: List = field(default_factory=list)
    treatment_seeds: List = field(default_factory=list)
    control_values: List = field(default_factory=list)   # (unit, seed, value) of each run
    treatment_values: List = field(default_factory=list)
    # the gain at the level of the design, with its interval and what it rests on
    gain: Gain = field(default_factory=lambda: Gain(None, None, None, NO_RUNS))
    costs: Dict = field(default_factory=dict)    # device-seconds: 'pair', 'seed'; 'device'
    contrast: str = ''         # 'interaction' for a 2x2 factorial's interaction row
    control: str = CONTROL     # the arm the treatment is compared with (plain_*: its runs)


@dataclass
class Table:
    rows: List[Row]
    notes: List[str]
    arms: List[Tuple[List[Run], List[Run]]]   # the (control, treatment) runs behind each row


def build_table(runs: Sequence[Run], problems: Sequence[str] = (),
                metrics: Optional[Sequence[str]] = None, best: bool = False) -> Table:
    """One row per (experiment, treatment arm, metric): the control against the arm
    (``+CB(mlp)``, ``+reg4``, ...); and, where an experiment's arms make a 2x2 factorial with the
    control (two changes and both together), a row of the interaction contrast. The control is
    ``plain`` (no change); an experiment without one is compared with its arm of fewest changes
    whose changes every other arm shares (the rows then say ``ARM vs CONTROL``)."""
    notes = list(problems)
    for run in runs:
        if not run.complete:
            notes.append(f'incomplete, not tabulated: {run.path} ({"; ".join(run.problems)})')
    judged = [run.path for run in runs if run.complete and not run.recorded]
    if judged:
        notes.append(f'{len(judged)} run{"s" * (len(judged) > 1)} without a run record, judged '
                     'finished by their logs (trained to the end of the schedule, evaluated): '
                     + ', '.join(judged))
    experiments: Dict[str, Dict[str, List[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.complete:
            experiments[run.experiment][run.change].append(run)

    by_name = {run.name: run for run in runs if run.name}
    entries = []
    for arms in experiments.values():
        control = _control(arms)
        control_runs = arms.get(control, [])
        treatments = sorted(k for k in arms if k != control) or ['']
        for treatment in treatments:
            treated = arms[treatment] if treatment else []
            sample = (control_runs or treated)[0]
            for metric in metrics or _logged_defaults(sample.task, control_runs + treated):
                row = _row(sample, treatment, metric, control_runs, treated, best, notes)
                row.control = control if control_runs and treatment else ''
                row.costs = _costs(control_runs, treated, by_name)
                entries.append((row, (control_runs, treated)))
        every_run = [run for runs in arms.values() for run in runs]
        notes.extend(_protocol_notes(every_run[0], every_run))  # once for all the arms
        for factors in _factorials(arms, control):
            sample = control_runs[0]
            for metric in metrics or _logged_defaults(sample.task, control_runs):
                row = _interaction_row(sample, metric, control, factors, arms, best, notes)
                entries.append((row, (control_runs, arms[factors[2]])))
    entries.sort(key=lambda e: (TASK_ORDER.get(e[0].task, 9), e[0].task, e[0].protocol,
                                e[0].dataset, e[0].model, e[0].arch, e[0].schedule, e[0].metric,
                                e[0].contrast, arm_order(e[0].arm)))
    return Table([row for row, _ in entries], notes, [arms for _, arms in entries])


TASK_ORDER = {'classification': 0, 'segmentation': 1, 'detection': 2}


def _logged_defaults(task: str, runs: List[Run]) -> List[str]:
    """The task's standard metrics that these runs logged (all of them if none did), each
    followed by its robustness figures where the runs were evaluated under corruption."""
    defaults = DEFAULT_METRICS.get(task, [])
    logged = [m for m in defaults if any(r.metric(m) is not None for r in runs)] or defaults
    robust = sorted({name for r in runs for name in r.robustness})
    return [m for base in logged for m in [base] + [r for r in robust
                                                   if r.startswith(base + '/')]]


def _sources(arm: List[Run]) -> str:
    return ', '.join(sorted({r.weights_source for r in arm}))


def _protocol_notes(sample: Run, runs: List[Run]) -> List[str]:
    """What a row's weights say against the protocol it declares: in the two-stage protocol
    each arm starts from its own checkpoint, pretrained as that arm (the same changes)."""
    arms = {r.change for r in runs}
    if sample.protocol != 'two-stage' or len(arms) < 2:
        return []
    where = f'{sample.model} {sample.arch} {sample.schedule} ({sample.protocol})'
    notes = []
    owners = defaultdict(set)
    for r in runs:
        if r.weights:
            owners[r.weights.sha256].add(r.change)
    shared = sorted(h[:8] for h, owner in owners.items() if len(owner) > 1)
    if shared:
        notes.append(f'{where}: arms started from the same weights (sha256 '
                     f'{", ".join(shared)}): that is the change switched on at fine-tuning, not '
                     'the two-stage protocol')
    for arm in sorted(arms):
        wrong = [r for r in runs if r.change == arm and r.weights
                 and r.weights.pretrained_arm not in (None, r.change)]
        if wrong:
            notes.append(f'{where}: the {arm} arm started from weights pretrained as '
                         f'{wrong[0].weights.pretrained_arm} ({_sources(wrong)})')
    return notes


def _values(arm: List[Run], metric: str, best: bool, notes: List[str]):
    out = []
    for run in arm:
        value = run.metric(metric, best)
        if value is None:
            notes.append(f'{run.path}: no {metric} logged, left out')
        elif math.isnan(value):
            notes.append(f'{run.path}: {metric} is NaN, left out')
        else:
            out.append((run.unit, run.seed, value))
    return out


def _costs(control: List[Run], treated: List[Run], by_name: Dict[str, Run]) -> dict:
    """What a row's design costs (device-seconds): ``pair``, one more pretraining pair (the
    distinct upstream runs a pair's fine-tuning runs started from; for pretraining rows and rows
    from scratch, the row's own runs of one unit); ``seed``, one more fine-tuning seed of a pair
    (both arms). Empty where the runs do not say what they cost."""
    def mean_cost(arm_runs: List[Run]) -> Optional[float]:
        costs = [r.cost for r in arm_runs if r.cost is not None]
        return float(np.mean(costs)) if costs else None

    runs = control + treated
    per_arm = [mean_cost(control), mean_cost(treated)]
    if None in per_arm:
        return {}
    device = 'cuda' if any(r.device == 'cuda' for r in runs) else 'cpu'
    if all(r.upstream_run is None for r in runs):  # the runs are the replicated units
        return dict(pair=sum(per_arm), device=device)
    pairs: Dict[Optional[int], set] = defaultdict(set)
    for run in runs:
        if run.upstream_run in by_name:
            pairs[run.pair].add(run.upstream_run)
    pair_costs = [sum(by_name[name].cost or 0.0 for name in names) for names in pairs.values()]
    return dict(pair=float(np.mean(pair_costs)) if pair_costs else None, seed=sum(per_arm),
                device=device)


def _control(arms: Dict[str, List[Run]]) -> str:
    """The arm an experiment's treatments are compared with: ``plain`` where there is one, else
    the arm of fewest changes whose changes every arm shares (the first, if none does). A lone
    arm with changes is a treatment whose control is missing."""
    if CONTROL in arms or len(arms) == 1:
        return CONTROL
    options = {label: set(_flat(runs[0].arm_options).items()) for label, runs in arms.items()}
    shared = [label for label in arms if all(options[label] <= o for o in options.values())]
    return min(shared or list(arms), key=lambda label: (len(options[label]), label))


def _factorials(arms: Dict[str, List[Run]], control: str) -> List[Tuple[str, str, str]]:
    """(A, B, AB) for each pair of treatments whose changes over the control, together, are a
    third arm's: a 2x2 factorial with the control."""
    if control not in arms:
        return []
    base = set(_flat(arms[control][0].arm_options).items())
    options = {label: set(_flat(runs[0].arm_options).items()) - base
               for label, runs in arms.items()}
    found = []
    treatments = sorted(label for label in arms if label != control)
    for i, a in enumerate(treatments):
        for b in treatments[i + 1:]:
            if {k for k, _ in options[a]} & {k for k, _ in options[b]}:
                continue
            both = options[a] | options[b]
            for ab in treatments:
                if ab not in (a, b) and options[ab] == both:
                    found.append((a, b, ab))
    return found


def _flat(options: dict) -> dict:
    """Arm options as (key, value) items, timm_kwargs one by one (comparable, hashable)."""
    flat = {k: repr(v) for k, v in options.items() if k != 'timm_kwargs'}
    timm_kwargs = options.get('timm_kwargs') or {}
    flat.update({f'timm_kwargs.{k}': repr(v) for k, v in timm_kwargs.items()})
    return flat


def _interaction_row(sample: Run, metric: str, control: str, factors: Tuple[str, str, str],
                     arms: Dict[str, List[Run]], best: bool, notes: List[str]) -> Row:
    """The interaction contrast (AB - A) - (B - control) per replicate (pair and seed): whether
    one change's gain depends on the other. It is the gain of AB over A + B - control, with
    its interval at the level of the design."""
    a, b, ab = factors
    values = {label: {(u, s): v for u, s, v in _values(arms[label], metric, best, [])}
              for label in (control, a, b, ab)}
    keys = sorted(set.intersection(*(set(v) for v in values.values())), key=str)
    baseline = [(u, s, values[a][(u, s)] + values[b][(u, s)] - values[control][(u, s)])
                for u, s in keys]
    combined = [(u, s, values[ab][(u, s)]) for u, s in keys]
    row = _row(sample, ab, metric, [], [], best, notes)
    row.gain = gain(baseline, combined, units_are_pairs=any(r.pair is not None for r in arms[ab]))
    row.arm = f'{ab} vs {a} and {b} (interaction)'
    row.contrast, row.control = 'interaction', control
    return row


def _row(sample: Run, arm: str, metric: str, control_runs: List[Run], treated: List[Run],
         best: bool, notes: List[str]) -> Row:
    p, c = _values(control_runs, metric, best, notes), _values(treated, metric, best, notes)
    ps, cs = summarize([v for _, _, v in p]), summarize([v for _, _, v in c])
    g = gain(p, c, units_are_pairs=any(r.pair is not None for r in control_runs + treated)) \
        if p and c else Gain(None, None, None, NO_RUNS)
    return Row(task=sample.task, dataset=sample.dataset, model=sample.model, arch=sample.arch,
               schedule=sample.schedule, arm=arm or sample.change, metric=metric,
               selection=('final checkpoint' if is_robustness(metric) else
                          'best' if best else 'last'),
               control_n=ps.n, control_mean=ps.mean, control_std=ps.std,
               treatment_n=cs.n, treatment_mean=cs.mean, treatment_std=cs.std,
               reference=REFERENCES.get((sample.dataset, sample.model, arch_name(sample.arch),
                                         sample.schedule, metric)),
               protocol=sample.protocol, control_weights=_sources(control_runs),
               treatment_weights=_sources(treated),
               control_seeds=sorted({s for _, s, _ in p if s is not None}),
               treatment_seeds=sorted({s for _, s, _ in c if s is not None}),
               control_values=sorted(map(list, p), key=_by_unit),
               treatment_values=sorted(map(list, c), key=_by_unit), gain=g)


def _by_unit(item):
    unit, seed, value = item
    return (unit is None, unit if unit is not None else 0, seed is None,
            seed if seed is not None else 0, value)


def _arm(n: int, mean: Optional[float], std: Optional[float]) -> str:
    if n == 0:
        return ''
    return f'{mean:.2f} ± {std:.2f} (n={n})' if std is not None else f'{mean:.2f} (n={n})'


def _gain(row: Row) -> str:
    if row.gain.delta is None:
        return ''
    if row.gain.ci_low is None:
        return f'{row.gain.delta:+.2f}'
    return f'{row.gain.delta:+.2f} [{row.gain.ci_low:+.2f}, {row.gain.ci_high:+.2f}]'


def to_markdown(table: Table, reference: bool = False) -> str:
    head = ['task', 'protocol', 'data', 'model', 'backbone', 'schedule', 'metric', 'arm',
            'control', 'treated', 'gain (95% CI)', 'how', 'weights: control', 'weights: treated']
    if reference:
        head.append('reference (plain)')
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in table.rows:
        cells = [r.task, r.protocol, r.dataset, r.model, r.arch, r.schedule,
                 f'{r.metric} ({r.selection})', arm_text(r),
                 _arm(r.control_n, r.control_mean, r.control_std),
                 _arm(r.treatment_n, r.treatment_mean, r.treatment_std), _gain(r), r.gain.method,
                 r.control_weights, r.treatment_weights]
        if reference:
            cells.append(num(r.reference, missing=''))
        lines.append('| ' + ' | '.join(cells) + ' |')
    text = '\n'.join(lines) + '\n'
    text += ('\nMetrics in percent (mmdet\'s fractions x 100); mean ± sample std over seeds; '
             'gain = the arm (treated) minus its control (plain, no change, unless the arm says '
             '"vs"), paired by pretraining pair and seed where they match; an interaction row is '
             'the gain of both changes together over the sum of their own gains. Protocols: '
             + PROTOCOLS_TEXT
             + ' Weights: the checkpoint each arm\'s backbone started from (file, first 8 hex '
             'digits of its SHA-256) or "from scratch".\n')
    if table.notes:
        text += '\nNotes:\n' + ''.join(f'- {n}\n' for n in table.notes)
    return text


def to_json(table: Table) -> str:
    return json.dumps([asdict(r) for r in table.rows], indent=2) + '\n'


def to_csv(table: Table) -> str:
    out = io.StringIO()
    def flat(row: Row) -> dict:  # the gain's fields as columns of their own
        fields = asdict(row)
        gain_fields = fields.pop('gain')
        components = gain_fields.pop('components')
        return {**fields, **gain_fields, **{f'components_{k}': v for k, v in components.items()}}

    rows = [flat(r) for r in table.rows]
    writer = csv.DictWriter(out, fieldnames=list(rows[0] if rows else Row.__dataclass_fields__))
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (' '.join(map(str, v)) if isinstance(v, list) else
                             '' if v is None else v) for k, v in r.items()})
    return out.getvalue()


def to_latex(table: Table) -> str:
    def esc(text: str) -> str:
        return (text.replace('\\', r'\textbackslash{}').replace('_', r'\_').replace('%', r'\%')
                .replace('&', r'\&').replace('#', r'\#'))

    lines = [r'\begin{tabular}{llllllrrr}', r'\toprule',
             r'data & model & backbone & schedule & metric & arm & control & treated & '
             r'$\Delta$ (95\% CI) \\',
             r'\midrule']
    for r in table.rows:
        control = '' if r.control_mean is None else f'{r.control_mean:.2f}'
        treatment = '' if r.treatment_mean is None else f'{r.treatment_mean:.2f}'
        delta = _gain(r).replace('[', '{[}').replace(']', '{]}')
        lines.append(' & '.join(esc(x) for x in (r.dataset, r.model, r.arch, r.schedule, r.metric,
                                                 arm_text(r)))
                     + f' & {control} & {treatment} & {delta} \\\\')
    lines += [r'\bottomrule', r'\end{tabular}']
    return '\n'.join(lines) + '\n'


FORMATS = {'markdown': to_markdown, 'json': to_json, 'csv': to_csv, 'latex': to_latex}
