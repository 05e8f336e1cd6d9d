"""Pair plain and +CB arms, compute their statistics, and write the table and the plot."""
import csv
import io
import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..robustness.metrics import is_robustness
from .format import arch_name, num
from .runs import Run
from .stats import gain, summarize

DEFAULT_METRICS = {'classification': ['accuracy/top1', 'accuracy/top5'],
                   'segmentation': ['mIoU'], 'detection': ['coco/bbox_mAP', 'coco/segm_mAP']}
# Public numbers for plain arms (DESIGN.md): mmseg's model zoo (UPerNet + DeiT, ADE20K, single
# scale) and ViT-Adapter's plain-ViT Mask R-CNN 3x + MS baselines (DeiT init).
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
    'pretraining': 'ImageNet pretraining of both arms from scratch with one recipe',
    'two-stage': 'each arm fine-tuned from its own ImageNet checkpoint, both pretrained with one '
                 'recipe (the paper\'s protocol)',
    'cb-at-finetune': 'both arms fine-tuned from the same plain checkpoint, CB switched on at '
                      'fine-tuning',
    'zoo-check': 'a plain arm from a public checkpoint, to check the recipe against the model zoo '
                 '(not a CB comparison)',
    'from-scratch': 'both arms fine-tuned without pretraining',
}
PROTOCOLS_TEXT = '; '.join(f'{k}: {v}' for k, v in PROTOCOLS.items()) + '.'


@dataclass
class Row:
    task: str
    dataset: str
    model: str
    arch: str
    schedule: str
    cb_options: str
    metric: str
    selection: str
    plain_n: int
    plain_mean: Optional[float]
    plain_std: Optional[float]
    cb_n: int
    cb_mean: Optional[float]
    cb_std: Optional[float]
    delta: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    method: str
    reference: Optional[float]
    protocol: str = ''
    plain_weights: str = ''     # where each arm's backbone started: file (sha256[:8]) or scratch
    cb_weights: str = ''
    plain_seeds: List = field(default_factory=list)
    cb_seeds: List = field(default_factory=list)
    plain_values: List = field(default_factory=list)   # (unit, seed, value) of each run
    cb_values: List = field(default_factory=list)
    # the gain at the level of the design (cb_transfer.results.stats.Gain)
    level: str = ''
    units: int = 0
    seeds_per_unit: int = 0
    conditional: bool = False
    p_value: Optional[float] = None
    replicates: List = field(default_factory=list)
    plain_level: List = field(default_factory=list)
    cb_level: List = field(default_factory=list)
    components: Dict = field(default_factory=dict)
    costs: Dict = field(default_factory=dict)    # device-seconds: 'pair', 'seed'; 'device'


@dataclass
class Table:
    rows: List[Row]
    notes: List[str]
    arms: List[Tuple[List[Run], List[Run]]]   # the (plain, +CB) runs behind each row


def build_table(runs: Sequence[Run], problems: Sequence[str] = (),
                metrics: Optional[Sequence[str]] = None, best: bool = False) -> Table:
    """One row per (experiment, CB variant, metric): the plain arm against the +CB arm."""
    notes = list(problems)
    for run in runs:
        if not run.finished:
            notes.append(f'incomplete, not tabulated: {run.path} ({"; ".join(run.problems)})')
    judged = [run.path for run in runs if run.finished and not run.recorded]
    if judged:
        notes.append(f'{len(judged)} run{"s" * (len(judged) > 1)} without a run record, judged '
                     'finished by their logs (trained to the end of the schedule, evaluated): '
                     + ', '.join(judged))
    experiments: Dict[str, Dict[str, List[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.finished:
            experiments[run.experiment]['' if not run.cb else run.cb_options].append(run)

    by_name = {run.name: run for run in runs if run.name}
    entries = []
    for arms in experiments.values():
        plain = arms.get('', [])
        variants = sorted(k for k in arms if k) or ['']
        for variant in variants:
            cb = arms[variant] if variant else []
            sample = (plain or cb)[0]
            for metric in metrics or _logged_defaults(sample.task, plain + cb):
                row = _row(sample, variant, metric, plain, cb, best, notes)
                row.costs = _costs(plain + cb, by_name)
                entries.append((row, (plain, cb)))
            notes.extend(_protocol_notes(sample, plain, cb))
    entries.sort(key=lambda e: (TASK_ORDER.get(e[0].task, 9), e[0].task, e[0].protocol,
                                e[0].dataset, e[0].model, e[0].arch, e[0].schedule, e[0].metric,
                                e[0].cb_options))
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


def _protocol_notes(sample: Run, plain: List[Run], cb: List[Run]) -> List[str]:
    """What a row's weights say against the protocol it declares."""
    if sample.protocol != 'two-stage' or not plain or not cb:
        return []
    where = f'{sample.model} {sample.arch} {sample.schedule} ({sample.protocol})'
    notes = []
    shared = ({r.weights['sha256'] for r in plain if r.weights}
              & {r.weights['sha256'] for r in cb if r.weights})
    if shared:
        notes.append(f'{where}: both arms started from the same weights (sha256 '
                     f'{", ".join(sorted(h[:8] for h in shared))}): that is CB switched on at '
                     'fine-tuning, not the two-stage protocol')
    for arm, runs, expected in (('plain', plain, False), ('+CB', cb, True)):
        wrong = [r for r in runs if r.weights and r.weights.get('pretrained_with_cb')
                 not in (None, expected)]
        if wrong:
            notes.append(f'{where}: the {arm} arm started from weights pretrained with '
                         f'cb={not expected} ({_sources(wrong)})')
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


def _costs(runs: List[Run], by_name: Dict[str, Run]) -> dict:
    """What a row's design costs (device-seconds): ``pair``, one more pretraining pair (the
    distinct upstream runs a pair's fine-tuning runs started from; for pretraining rows and rows
    from scratch, the row's own runs of one unit); ``seed``, one more fine-tuning seed of a pair
    (both arms). Empty where the runs do not say what they cost."""
    def mean_cost(arm_runs: List[Run]) -> Optional[float]:
        costs = [r.cost for r in arm_runs if r.cost is not None]
        return float(np.mean(costs)) if costs else None

    arms = [[r for r in runs if not r.cb], [r for r in runs if r.cb]]
    per_arm = [mean_cost(arm) for arm in arms]
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


def _row(sample: Run, variant: str, metric: str, plain: List[Run], cb: List[Run], best: bool,
         notes: List[str]) -> Row:
    p, c = _values(plain, metric, best, notes), _values(cb, metric, best, notes)
    ps, cs = summarize([v for _, _, v in p]), summarize([v for _, _, v in c])
    g = gain(p, c, units_are_pairs=any(r.pair is not None for r in plain + cb)) \
        if p and c else None
    return Row(task=sample.task, dataset=sample.dataset, model=sample.model, arch=sample.arch,
               schedule=sample.schedule, cb_options=variant or '-', metric=metric,
               selection=('final checkpoint' if is_robustness(metric) else
                          'best' if best else 'last'),
               plain_n=ps.n, plain_mean=ps.mean, plain_std=ps.std,
               cb_n=cs.n, cb_mean=cs.mean, cb_std=cs.std,
               delta=g.delta if g else None, ci_low=g.ci_low if g else None,
               ci_high=g.ci_high if g else None,
               method=g.method if g else 'an arm has no runs',
               reference=REFERENCES.get((sample.dataset, sample.model, arch_name(sample.arch),
                                         sample.schedule, metric)),
               protocol=sample.protocol, plain_weights=_sources(plain), cb_weights=_sources(cb),
               plain_seeds=sorted({s for _, s, _ in p if s is not None}),
               cb_seeds=sorted({s for _, s, _ in c if s is not None}),
               plain_values=sorted(map(list, p), key=_by_unit),
               cb_values=sorted(map(list, c), key=_by_unit),
               **({} if g is None else dict(
                   level=g.level, units=g.units, seeds_per_unit=g.seeds_per_unit,
                   conditional=g.conditional, p_value=g.p_value, replicates=g.replicates,
                   plain_level=g.plain_level, cb_level=g.cb_level,
                   components=asdict(g.components))))


def _by_unit(item):
    unit, seed, value = item
    return (unit is None, unit if unit is not None else 0, seed is None,
            seed if seed is not None else 0, value)


def _arm(n: int, mean: Optional[float], std: Optional[float]) -> str:
    if n == 0:
        return ''
    return f'{mean:.2f} ± {std:.2f} (n={n})' if std is not None else f'{mean:.2f} (n={n})'


def _gain(row: Row) -> str:
    if row.delta is None:
        return ''
    if row.ci_low is None:
        return f'{row.delta:+.2f}'
    return f'{row.delta:+.2f} [{row.ci_low:+.2f}, {row.ci_high:+.2f}]'


def to_markdown(table: Table, reference: bool = False) -> str:
    head = ['task', 'protocol', 'data', 'model', 'backbone', 'schedule', 'metric', 'plain', '+CB',
            'CB variant', 'gain (95% CI)', 'how', 'weights: plain', 'weights: +CB']
    if reference:
        head.append('reference (plain)')
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in table.rows:
        cells = [r.task, r.protocol, r.dataset, r.model, r.arch, r.schedule,
                 f'{r.metric} ({r.selection})', _arm(r.plain_n, r.plain_mean, r.plain_std),
                 _arm(r.cb_n, r.cb_mean, r.cb_std), r.cb_options, _gain(r), r.method,
                 r.plain_weights, r.cb_weights]
        if reference:
            cells.append(num(r.reference, missing=''))
        lines.append('| ' + ' | '.join(cells) + ' |')
    text = '\n'.join(lines) + '\n'
    text += ('\nMetrics in percent (mmdet\'s fractions x 100); mean ± sample std over seeds; '
             'gain = +CB minus plain, paired by seed where the seeds match. Protocols: '
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
    fields = list(Row.__dataclass_fields__)
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for r in table.rows:
        writer.writerow({k: (' '.join(map(str, v)) if isinstance(v, list) else
                             '' if v is None else v) for k, v in asdict(r).items()})
    return out.getvalue()


def to_latex(table: Table) -> str:
    def esc(text: str) -> str:
        return (text.replace('\\', r'\textbackslash{}').replace('_', r'\_').replace('%', r'\%')
                .replace('&', r'\&').replace('#', r'\#'))

    lines = [r'\begin{tabular}{lllllrrr}', r'\toprule',
             r'data & model & backbone & schedule & metric & plain & +CB & $\Delta$ (95\% CI) \\',
             r'\midrule']
    for r in table.rows:
        plain = '' if r.plain_mean is None else f'{r.plain_mean:.2f}'
        cb = '' if r.cb_mean is None else f'{r.cb_mean:.2f}'
        delta = _gain(r).replace('[', '{[}').replace(']', '{]}')
        lines.append(' & '.join(esc(x) for x in (r.dataset, r.model, r.arch, r.schedule, r.metric))
                     + f' & {plain} & {cb} & {delta} \\\\')
    lines += [r'\bottomrule', r'\end{tabular}']
    return '\n'.join(lines) + '\n'


FORMATS = {'markdown': to_markdown, 'json': to_json, 'csv': to_csv, 'latex': to_latex}
