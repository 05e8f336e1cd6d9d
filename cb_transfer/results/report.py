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

from .table import PROTOCOLS, Table, to_markdown
from .verdict import (ALPHA, BOOTSTRAP_RESAMPLES, POWER, minimum_detectable_gain, row_power,
                      verdicts)

PACKAGES = ('torch', 'torchvision', 'timm', 'mmengine', 'mmcv', 'mmsegmentation', 'mmdet',
            'mmpretrain', 'submitit', 'numpy', 'scipy', 'cb_transfer')


def _num(value: Optional[float], digits: int = 2, sign: bool = False) -> str:
    if value is None:
        return '-'
    return f'{value:+.{digits}f}' if sign else f'{value:.{digits}f}'


def _interval(ci, digits: int = 2, sign: bool = False) -> str:
    if ci is None:
        return 'no interval (fewer than two seeds per arm)'
    return f'[{_num(ci[0], digits, sign)}, {_num(ci[1], digits, sign)}]'


def software_and_machine() -> List[str]:
    versions = []
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
    lines = [f'- Python {sys.version.split()[0]}; ' + ', '.join(versions),
             f'- {platform.platform()}; CPU: {cpu}, {os.cpu_count()} cores']
    try:
        import torch
        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            lines.append(f'- GPUs: {", ".join(names)} (CUDA {torch.version.cuda})')
        else:
            lines.append('- no GPU')
    except ImportError:
        pass
    return lines


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
        label = f'{row.model} {row.arch.split("(")[0]} {row.schedule}'
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
                     f'{_num(v.mean_gain, sign=True)} {_interval(v.gain_ci, sign=True)} | '
                     f'{_num(v.improvement)} {_interval(v.improvement_ci)} | {surviving} |')
    if not found:
        lines.append('| - | - | 0 | no row has both arms | - | - |')
    return lines


def power_lines(rows: Sequence, target_gain: Optional[float], seeds: Optional[int] = None
                ) -> List[str]:
    """The power table: per row, the gain its seeds detect and the seeds a target gain needs."""
    lines = ['| row | protocol | seeds | sd of the paired differences (or of the arms) | '
             f'gain detectable with {seeds or "these"} seeds | seeds for a gain of '
             f'{_num(target_gain)} |', '|---|---|---|---|---|---|']
    for row in rows:
        figures = row_power(row, target_gain)
        if figures is None:
            continue
        detectable = figures.detectable if seeds is None else \
            minimum_detectable_gain(figures.sd, seeds, figures.paired)
        needed = '-' if figures.seeds_for_target is None and target_gain is None else \
            (str(figures.seeds_for_target) if figures.seeds_for_target else '> 1000')
        lines.append(f'| {figures.label} | {figures.protocol} | {figures.n} '
                     f'({"paired" if figures.paired else "unpaired"}) | {_num(figures.sd, 3)} | '
                     f'{_num(detectable)} | {needed} |')
    return lines


def _power_section(table: Table, target_gain: Optional[float]) -> List[str]:
    return ['## Seeds and power', '',
            f'From each row\'s observed spread: the smallest gain its seeds detect with '
            f'{POWER:.0%} power in a two-sided t-test at {ALPHA:.0%} (noncentral t), and the '
            f'seeds per arm that a gain of {_num(target_gain)} needs (--target-gain). With so '
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
