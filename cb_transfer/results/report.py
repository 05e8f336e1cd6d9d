"""``report.md``: what a researcher reads after a suite. The protocol and each arm's weights, the
per-row table, the verdict across the matrix, the seeds each row needs, the figures, the attention
summary (when the analysis ran), the software and the machine."""
import datetime
import math
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import List, Optional, Sequence

from .format import interval, num, row_label
from .table import PROTOCOLS, Table, to_markdown
from .verdict import ALPHA, BOOTSTRAP_RESAMPLES, CONDITIONAL, POWER, row_design, verdicts

# what collect_env does not report
PACKAGES = ('timm', 'mmcv', 'mmsegmentation', 'mmdet', 'mmpretrain', 'submitit', 'numpy', 'scipy',
            'cb_transfer')


NO_INTERVAL = 'no interval (fewer than two replicates)'


def software_and_machine() -> List[str]:
    """The software (mmengine's ``collect_env``, plus the packages it does not know) and the
    machine the report was written on."""
    from mmengine.utils.dl_utils import collect_env
    env = collect_env()
    versions = [f'{name} {env[key]}' for name, key in (('torch', 'PyTorch'),
                                                       ('torchvision', 'TorchVision'),
                                                       ('mmengine', 'MMEngine'),
                                                       ('opencv', 'OpenCV')) if key in env]
    for name in PACKAGES:
        try:
            versions.append(f'{name} {metadata.version(name)}')
        except metadata.PackageNotFoundError:
            continue
    cpu = platform.processor() or '?'
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name')), cpu)
    except OSError:
        pass
    gpus = [f'{k}: {v}' for k, v in env.items() if k.startswith('GPU ')]
    return [f'- Python {sys.version.split()[0]} ({env.get("GCC", "?")}); ' + ', '.join(versions),
            f'- {platform.platform()}; CPU: {cpu}, {os.cpu_count()} cores',
            f'- GPUs: {"; ".join(gpus)} (CUDA {env.get("NVCC", "?")})' if gpus else '- no GPU']


def _weights_section(table: Table) -> List[str]:
    lines = ['## Protocol and weights', '']
    for protocol in dict.fromkeys(r.protocol for r in table.rows):
        lines.append(f'- **{protocol}**: {PROTOCOLS.get(protocol, "as the configs declare it")}')
    lines += ['', 'Where each arm\'s backbone started (file and the first 8 hex digits of its '
              'SHA-256, as the run\'s log recorded it when loading, or "from scratch"):', '',
              '| row | protocol | control | arm |', '|---|---|---|---|']
    seen = set()
    for row in table.rows:
        key = (row.task, row.model, row.arch, row.schedule, row.protocol, row.arm)
        if key in seen:
            continue
        seen.add(key)
        label = row_label(row, metric=False)
        lines.append(f'| {label} | {row.protocol} | {row.control_weights or "-"} | '
                     f'{row.treatment_weights or "-"} |')
    return lines


def _verdict_section(table: Table) -> List[str]:
    lines = ['## Verdict across the matrix', '',
             'Per protocol, arm and task, over the rows with both arms (never two arms in one '
             'verdict), each row at the level of its design: the unit is the pretraining pair '
             '(the control and the arm pretrained with one seed; each row\'s gain is the mean '
             'over pairs of the mean paired '
             'difference over fine-tuning seeds), or, for runs from scratch, the seed. Rows with '
             'one pretraining run per arm are a family of their own, **conditional**: their '
             'intervals cover fine-tuning noise only, given those checkpoints, and they are not '
             'a verdict about the change. Columns: the mean gain over rows (the arm minus its '
             'control, in metric '
             'points) with a stratified bootstrap interval (scipy.stats.bootstrap, each row\'s '
             f'replicates resampled within the row, percentile, {BOOTSTRAP_RESAMPLES:,} '
             'resamples, fixed seed; rows with fewer than two replicates count in the mean but '
             'not in the interval); the probability that the arm beats its control for a random '
             'row and '
             'replicate (Mann-Whitney over the arms\' replicate means, ties a half; the same '
             f'bootstrap); and the rows whose gain stays significant at {ALPHA:.0%} after a Holm '
             'correction over the family (t over the replicates; adjusted p-value in brackets).',
             'Robustness rows (mPC, rPC, or a labelled subset) are a family of their own.',
             '', '| protocol | arm | family | metrics | task | rows | mean gain (95% CI) | '
             'P(arm > control) (95% CI) | significant after Holm |',
             '|---|---|---|---|---|---|---|---|---|']
    found = verdicts(table.rows)
    for v in found:
        surviving = '; '.join(v.surviving) or f'none of {v.tested}'
        kind = ('conditional: these checkpoints, not the change' if v.family == CONDITIONAL
                else v.family)
        lines.append(f'| {v.protocol} | {v.arm} | {kind} | {v.measure} | {v.task} | {v.rows} '
                     f'({v.bootstrapped} with '
                     f'intervals) | {num(v.mean_gain, sign=True)} '
                     f'{interval(v.gain_ci, sign=True, missing=NO_INTERVAL)} | '
                     f'{num(v.improvement)} {interval(v.improvement_ci, missing=NO_INTERVAL)} | '
                     f'{surviving} |')
    if not found:
        lines.append('| - | - | - | - | - | 0 | no row has both arms | - | - |')
    return lines


def _hours(seconds: Optional[float], device: str) -> str:
    if seconds is None:
        return '?'
    return f'{seconds / 3600:.3g} {"GPU" if device == "cuda" else "CPU"}-h'


def _sd(variance: Optional[float]) -> str:
    return '-' if variance is None else f'{math.sqrt(variance):.3f}'


def design_lines(rows: Sequence, target_gain: Optional[float], pairs: Optional[int] = None,
                 seeds: Optional[int] = None) -> List[str]:
    """The design table: per row, where its noise is, what its design detects, what a pair and
    a seed cost, and the cheapest design that detects ``target_gain``. ``pairs`` and ``seeds``:
    the design to judge (a suite's planned one; default each row's own)."""
    planned = f'{pairs} x {seeds}' if pairs and seeds else 'its design'
    lines = ['| row | protocol | design (pairs x seeds) | sd between pairs | sd between seeds | '
             f'gain detectable with {planned} | cost of a pair / a seed | cheapest design for '
             f'{num(target_gain, sign=True)} (pairs x seeds: power, cost) |',
             '|---|---|---|---|---|---|---|---|']
    for row in rows:
        design = row_design(row, target_gain, pairs, seeds)
        if design is None:
            continue
        c = design.components
        if design.level == 'conditional':
            shape = f'1 x {design.seeds} (conditional)'
            between_pairs, detectable = 'unknown (one pair)', f'{num(design.detectable)} ' \
                '(given this pair)'
            cheapest = 'needs two or more pairs to estimate the variance between pairs'
        else:
            shape = (f'{design.pairs} x {design.seeds}' if design.level == 'pairs'
                     else f'{design.pairs} seeds from scratch')
            between_pairs = _sd(c.pairs) if c.total is None else \
                f'{_sd(c.total)} (with seeds: one seed a pair)'
            detectable = num(design.detectable)
            best = design.cheapest
            cheapest = ('-' if target_gain is None or design.cost_pair is None else
                        'more than 100 pairs' if best is None else
                        f'{best.pairs} x {best.seeds}: {best.power:.2f}, '
                        f'{_hours(best.cost, design.device)}')
        cost = f'{_hours(design.cost_pair, design.device)} / ' + (
            _hours(design.cost_seed, design.device) if design.cost_seed is not None else '-')
        lines.append(f'| {design.label} | {design.protocol} | {shape} | {between_pairs} | '
                     f'{_sd(c.seeds)} | {detectable} | {cost} | {cheapest} |')
    return lines


def _design_section(table: Table, target_gain: Optional[float]) -> List[str]:
    return ['## Design: where the noise is, and what detecting a gain costs', '',
            'Per row, the variance of the paired difference (the arm minus its control) between '
            'pretraining pairs and between fine-tuning seeds within a pair (one-way '
            'random-effects estimates, shown as standard deviations in metric points); the '
            f'smallest gain its design detects with {POWER:.0%} power in a two-sided t-test at '
            f'{ALPHA:.0%} (noncentral t over the pairs, whose mean difference has variance '
            'sd_pairs^2 + sd_seeds^2 / seeds); what one more pretraining pair and one more '
            'fine-tuning seed of a pair cost (both arms; seconds per iteration x iterations x '
            'processes, from the runs\' records); and the cheapest design (pairs x seeds) that '
            f'detects a gain of {num(target_gain)} (--target-gain). A pair\'s pretraining serves '
            'every row fine-tuned from it. With few pairs the variances are themselves '
            'uncertain: read these as orders of magnitude.', '',
            *design_lines(table.rows, target_gain)]


def _robustness_section(table: Table) -> List[str]:
    """What was evaluated under corruption, if anything."""
    from ..robustness.corruptions import BENCHMARK
    from ..robustness.metrics import is_benchmark
    runs = {id(r): r for arms in table.arms for arm in arms for r in arm if r.corruption_results}
    if not runs:
        return []
    cells = {(r['corruption'], r['severity']) for run in runs.values()
             for r in run.corruption_results if r['corruption'] != 'clean'}
    corruptions = sorted({c for c, _ in cells}, key=lambda c: (c not in BENCHMARK, c))
    severities = sorted({s for _, s in cells})
    kind = ('the benchmark: 15 corruptions x severities 1 to 5, so mPC and rPC as the '
            'literature defines them' if is_benchmark(corruptions, severities) else
            'a subset, so its means are labelled as such and never called mPC')
    return ['', '## Robustness to common corruptions', '',
            f'{len(runs)} fine-tuned runs evaluated on their validation sets clean and under '
            f'{", ".join(corruptions)} at severit{"y" if len(severities) == 1 else "ies"} '
            f'{", ".join(map(str, severities))} ({kind}); imagecorruptions 1.1.2 applied right '
            'after loading, each image\'s random draws fixed so that both arms see the same '
            'pixels. P is the clean metric, the mean under corruption is over the benchmark '
            'corruptions evaluated, the relative one that mean over P (in percent). The rows '
            'are in the per-row table (metric/mPC, metric/rPC), with intervals at the level of '
            'the design and a Holm family of their own; every evaluation in robustness.json; '
            'the metric against severity per corruption family in robustness.png.']


def write_report(root: Path, table: Table, figures: Sequence[Path], pending: Sequence[str],
                 target_gain: Optional[float], title: str) -> Path:
    """Write ``root/report.md``; figures are linked relative to ``root``."""
    lines = [f'# cb_transfer report: {title}', '',
             f'Written {datetime.datetime.now():%Y-%m-%d %H:%M} from the runs under `{root}`. '
             'Numbers from one machine (below): the same seed gives bit-identical runs on one '
             'machine and thread count, other CPUs give other numbers.', '']
    lines += _weights_section(table) + ['', '## Results per row', '', to_markdown(table, True)]
    lines += _verdict_section(table) + [''] + _design_section(table, target_gain)
    lines += _robustness_section(table)
    lines += ['', '## Figures', '']
    for figure in figures:
        if figure.suffix == '.png':
            pdf = figure.with_suffix('.pdf')
            lines.append(f'![{figure.stem}]({figure.relative_to(root)}) '
                         f'([PDF]({pdf.relative_to(root)}))')
            lines.append('')
    attention = root / 'attention' / 'attention.md'
    if attention.is_file():
        lines += ['## Attention (the CB paper\'s measurement, on the trained arms)', '',
                  attention.read_text().strip(), '',
                  '![attention](attention/attention.png) ([PDF](attention/attention.pdf))', '']
    if pending:
        lines += ['## Not finished', '', *[f'- {name}' for name in pending], '']
    lines += ['## Software and machine', '', *software_and_machine(), '']
    path = root / 'report.md'
    path.write_text('\n'.join(lines))
    return path
