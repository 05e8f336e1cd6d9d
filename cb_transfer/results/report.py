"""``report.md``: what a researcher reads after a suite. The protocol and each arm's weights, the
per-row table, the verdict across the matrix, the seeds each row needs, the figures, the attention
summary (when the analysis ran), the software and the machine."""
import datetime
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import List, Optional, Sequence

from .format import interval, num, row_label
from .table import PROTOCOLS, Table, to_markdown
from .verdict import (ALPHA, BOOTSTRAP_RESAMPLES, POWER, minimum_detectable_gain, row_power,
                      verdicts)

# what collect_env does not report
PACKAGES = ('timm', 'mmcv', 'mmsegmentation', 'mmdet', 'mmpretrain', 'submitit', 'numpy', 'scipy',
            'cb_transfer')


NO_INTERVAL = 'no interval (fewer than two seeds per arm)'


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
              '| row | protocol | plain arm | +CB arm |', '|---|---|---|---|']
    seen = set()
    for row in table.rows:
        key = (row.task, row.model, row.arch, row.schedule, row.protocol, row.cb_options)
        if key in seen:
            continue
        seen.add(key)
        label = row_label(row, metric=False)
        lines.append(f'| {label} | {row.protocol} | {row.plain_weights or "-"} | '
                     f'{row.cb_weights or "-"} |')
    return lines


def _verdict_section(table: Table) -> List[str]:
    lines = ['## Verdict across the matrix', '',
             f'Per protocol and task, over the rows with both arms: the mean gain over rows (+CB '
             f'minus plain, in metric points) with a stratified bootstrap interval '
             f'(scipy.stats.bootstrap, each arm\'s seeds resampled within its row, percentile, '
             f'{BOOTSTRAP_RESAMPLES:,} resamples, fixed seed; rows with fewer than two seeds per '
             f'arm count in the mean but not in the interval); the probability that +CB beats '
             f'plain for a random row and seed (Mann-Whitney, ties a half; the same bootstrap); '
             f'and the rows whose gain stays significant at {ALPHA:.0%} after a Holm correction '
             f'over the protocol\'s rows (paired t-test where seeds pair, Welch\'s otherwise; '
             f'adjusted p-value in brackets).', '',
             '| protocol | task | rows | mean gain (95% CI) | P(+CB > plain) (95% CI) | '
             'significant after Holm |', '|---|---|---|---|---|---|']
    found = verdicts(table.rows)
    for v in found:
        surviving = '; '.join(v.surviving) or f'none of {v.tested}'
        lines.append(f'| {v.protocol} | {v.task} | {v.rows} ({v.bootstrapped} with intervals) | '
                     f'{num(v.mean_gain, sign=True)} {interval(v.gain_ci, sign=True, missing=NO_INTERVAL)} | '
                     f'{num(v.improvement)} {interval(v.improvement_ci, missing=NO_INTERVAL)} | {surviving} |')
    if not found:
        lines.append('| - | - | 0 | no row has both arms | - | - |')
    return lines


def power_lines(rows: Sequence, target_gain: Optional[float], seeds: Optional[int] = None
                ) -> List[str]:
    """The power table: per row, the gain its seeds detect and the seeds a target gain needs."""
    lines = ['| row | protocol | seeds | sd of the paired differences (or of the arms) | '
             f'gain detectable with {seeds or "these"} seeds | seeds for a gain of '
             f'{num(target_gain)} |', '|---|---|---|---|---|---|']
    for row in rows:
        figures = row_power(row, target_gain)
        if figures is None:
            continue
        detectable = figures.detectable if seeds is None else \
            minimum_detectable_gain(figures.sd, seeds, figures.paired)
        needed = '-' if figures.seeds_for_target is None and target_gain is None else \
            (str(figures.seeds_for_target) if figures.seeds_for_target else '> 1000')
        lines.append(f'| {figures.label} | {figures.protocol} | {figures.n} '
                     f'({"paired" if figures.paired else "unpaired"}) | {num(figures.sd, 3)} | '
                     f'{num(detectable)} | {needed} |')
    return lines


def _power_section(table: Table, target_gain: Optional[float]) -> List[str]:
    return ['## Seeds and power', '',
            f'From each row\'s observed spread: the smallest gain its seeds detect with '
            f'{POWER:.0%} power in a two-sided t-test at {ALPHA:.0%} (noncentral t), and the '
            f'seeds per arm that a gain of {num(target_gain)} needs (--target-gain). With so '
            'few seeds the spread itself is uncertain: read these as orders of magnitude.', '',
            *power_lines(table.rows, target_gain)]


def write_report(root: Path, table: Table, figures: Sequence[Path], pending: Sequence[str],
                 target_gain: Optional[float], title: str) -> Path:
    """Write ``root/report.md``; figures are linked relative to ``root``."""
    lines = [f'# cb_transfer report: {title}', '',
             f'Written {datetime.datetime.now():%Y-%m-%d %H:%M} from the runs under `{root}`. '
             'Numbers from one machine (below): the same seed gives bit-identical runs on one '
             'machine and thread count, other CPUs give other numbers.', '']
    lines += _weights_section(table) + ['', '## Results per row', '', to_markdown(table, True)]
    lines += _verdict_section(table) + [''] + _power_section(table, target_gain)
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
