"""Figures for papers: the gain of each row with its interval and every seed's paired difference,
and both arms' training loss and validation metric over training.

Sized for a page (7 inches wide, 8-9 pt labels at 100%), written as PNG and PDF. In the curves
each arm has its own colour, marker and line style and a translucent band (mean ± std over seeds,
where there are two or more), so that neither arm can hide the other.
"""
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import matplotlib

matplotlib.use('Agg')  # files only; no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .format import row_label  # noqa: E402
from .table import Table  # noqa: E402

WIDTH_INCHES, DPI = 7.0, 200
FONT = 8
ARMS = {'plain': dict(color='tab:gray', marker='o', linestyle='--'),
        '+CB': dict(color='tab:red', marker='^', linestyle='-')}
FORMATS = ('.png', '.pdf')


def save_figure(fig, path: str, dpi: int = DPI) -> List[Path]:
    """Write a figure as PNG and PDF beside each other (``path``'s suffix is replaced) and close
    it; returns the files."""
    fig.tight_layout()
    written = []
    for suffix in FORMATS:
        out = Path(path).with_suffix(suffix)
        fig.savefig(out, dpi=dpi)
        written.append(out)
    plt.close(fig)
    return written


INTERVAL_COLOURS = {'pairs': 'tab:blue', 'seeds': 'tab:blue', 'unpaired': 'tab:blue',
                    'conditional': 'tab:orange'}


def plot_gains(table: Table, path: str) -> List[Path]:
    """The gain of each row (square) with its 95% interval (blue at the level of the design,
    orange where it is conditional on one pretraining run per arm, grey where there is none) and
    each replicate's paired difference (dots: a pretraining pair's mean over its seeds, or one
    seed). Written as ``path`` in PNG and PDF."""
    rows = [r for r in table.rows if r.delta is not None]
    height = 1.0 + 0.42 * max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(WIDTH_INCHES, height))
    for y, row in enumerate(rows):
        has_ci = row.ci_low is not None
        ax.errorbar(row.delta, y, xerr=[[row.delta - row.ci_low if has_ci else 0],
                                        [row.ci_high - row.delta if has_ci else 0]],
                    fmt='s', capsize=3, markersize=5,
                    color=INTERVAL_COLOURS.get(row.level, 'tab:gray') if has_ci else 'tab:gray',
                    zorder=3)
        if row.replicates:
            offsets = np.linspace(-0.18, 0.18, len(row.replicates))
            ax.scatter(row.replicates, y + offsets, s=10, color='black', alpha=0.7, zorder=4,
                       label='one replicate (+CB minus plain)' if y == 0 else None)
    ax.axvline(0, color='black', linewidth=0.8)
    ax.set_yticks(range(len(rows)), [row_label(r, protocol=True, separator='\n') for r in rows], fontsize=FONT)
    ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
    ax.invert_yaxis()
    ax.tick_params(axis='x', labelsize=FONT)
    ax.set_xlabel('gain of +CB over plain (metric points): mean, 95% interval (orange: '
                  'conditional on one pretraining run per arm), each pair or seed',
                  fontsize=FONT)
    if rows and rows[0].replicates:
        ax.legend(fontsize=FONT - 1, loc='best')
    ax.set_title('Context Broadcasting: gains' if rows else 'no row with both arms',
                 fontsize=FONT + 1)
    return save_figure(fig, path)


def _mean_band(curves: Sequence[Dict[int, float]]) -> Tuple[list, list, list]:
    """Steps, mean and std over the runs that logged each step."""
    values: Dict[int, List[float]] = defaultdict(list)
    for curve in curves:
        for step, value in curve.items():
            values[step].append(value)
    steps = sorted(values)
    means = [float(np.mean(values[s])) for s in steps]
    stds = [float(np.std(values[s], ddof=1)) if len(values[s]) > 1 else 0.0 for s in steps]
    return steps, means, stds


def _draw(ax, curves_by_arm: Dict[str, list], ylabel: str, xlabel: str) -> None:
    for arm, curves in curves_by_arm.items():
        steps, means, stds = _mean_band([c for c in curves if c])
        if not steps:
            continue
        style = ARMS[arm]
        ax.plot(steps, means, color=style['color'], linestyle=style['linestyle'],
                marker=style['marker'], markersize=3 if len(steps) > 12 else 4, linewidth=1.2,
                label=f'{arm} (mean of {len([c for c in curves if c])})')
        ax.fill_between(steps, np.subtract(means, stds), np.add(means, stds),
                        color=style['color'], alpha=0.18, linewidth=0)
    ax.set_xlabel(xlabel, fontsize=FONT)
    ax.set_ylabel(ylabel, fontsize=FONT)
    ax.tick_params(labelsize=FONT)


def plot_curves(table: Table, path: str) -> List[Path]:
    """Per experiment (one row of panels): the training loss and each tabulated metric over
    training, both arms as mean ± std over seeds. Written as ``path`` in PNG and PDF."""
    experiments: Dict[int, list] = {}
    for row, (plain, cb) in zip(table.rows, table.arms):
        if plain or cb:
            experiments.setdefault(id(plain or cb), [row, plain, cb, []])[3].append(row.metric)
    columns = 1 + max((len(e[3]) for e in experiments.values()), default=1)
    fig, axes = plt.subplots(max(len(experiments), 1), columns,
                             figsize=(WIDTH_INCHES, 2.1 * max(len(experiments), 1)),
                             squeeze=False)
    for line, (row, plain, cb, metrics) in zip(axes, experiments.values()):
        arms = {'plain': plain, '+CB': cb}
        _draw(line[0], {a: [r.losses for r in runs] for a, runs in arms.items()},
              'training loss', 'iteration')
        line[0].set_title(row_label(row, metric=False, protocol=True), fontsize=FONT,
                          loc='left')
        for ax, metric in zip(line[1:], metrics):
            _draw(ax, {a: [{s: m[metric] for s, m in r.evaluations.items() if metric in m}
                           for r in runs] for a, runs in arms.items()},
                  metric, 'evaluation (iteration, or epoch)')
        for ax in line[1 + len(metrics):]:
            ax.axis('off')
        line[0].legend(fontsize=FONT - 1)
    return save_figure(fig, path)


def plot_table(table: Table, path: str, curves: bool = False) -> List[Path]:
    """``plot_gains`` at ``path``; with ``curves`` also ``plot_curves`` beside it
    (``<name>_curves``)."""
    written = plot_gains(table, path)
    if curves:
        target = Path(path)
        written += plot_curves(table, str(target.with_name(target.stem + '_curves.png')))
    return written


def _family_curve(results: List[dict], metric: str, corruptions, scale: float) -> Dict[int, float]:
    """Severity (0: clean) -> the metric averaged over ``corruptions`` evaluated at it."""
    by_severity: Dict[int, List[float]] = defaultdict(list)
    for result in results:
        if metric not in result['metrics']:
            continue
        if result['corruption'] == 'clean' or result['corruption'] in corruptions:
            by_severity[result['severity']].append(result['metrics'][metric] * scale)
    return {s: float(np.mean(v)) for s, v in by_severity.items()}


def plot_robustness(table: Table, path: str) -> List[Path]:
    """Per evaluated metric (one row of panels) and corruption family (one panel each): the
    metric against severity (0: clean), both arms as mean ± std over their runs, each run's
    curve averaged over the family's corruptions. Written as ``path`` in PNG and PDF; nothing
    when no run was evaluated under corruption."""
    from ..robustness.corruptions import FAMILIES, HELD_OUT
    families = dict(FAMILIES, **{'held out': HELD_OUT})
    lines = []
    for row, (plain, cb) in zip(table.rows, table.arms):
        evaluated = [r for r in plain + cb if r.corruption_results]
        if not evaluated or any(row.metric in r.robustness for r in evaluated):
            continue  # a clean metric's row only, once
        present = {r['corruption'] for run in evaluated for r in run.corruption_results}
        shown = [f for f, names in families.items() if present & set(names)]
        if shown:
            lines.append((row, plain, cb, shown))
    if not lines:
        return []
    columns = max(len(shown) for *_, shown in lines)
    fig, axes = plt.subplots(len(lines), columns, squeeze=False,
                             figsize=(WIDTH_INCHES, 2.0 * len(lines)))
    for line, (row, plain, cb, shown) in zip(axes, lines):
        scale = 100.0 if row.task == 'detection' else 1.0   # mmdet logs fractions
        for ax, name in zip(line, shown):
            _draw(ax, {arm: [_family_curve(r.corruption_results, row.metric, families[name],
                                           scale) for r in runs]
                       for arm, runs in (('plain', plain), ('+CB', cb))},
                  f'{row.metric}', 'severity (0: clean)')
            ax.set_title(f'{row_label(row, metric=False)}: {name}', fontsize=FONT - 1,
                         loc='left')
        for ax in line[len(shown):]:
            ax.axis('off')
        line[0].legend(fontsize=FONT - 1)
    return save_figure(fig, path)
