"""Figures for papers: the gain of each row with its interval and every seed's paired difference,
and both arms' training loss and validation metric over training.

Sized for a page (7 inches wide, 8-9 pt labels at 100%), written as PNG and PDF. In the curves
each arm has its own colour, marker and line style and a translucent band (mean ± std over seeds,
where there are two or more), so that neither arm can hide the other.
"""
from collections import defaultdict
from dataclasses import replace
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
# the control's style, then the treatments' in turn
STYLES = (dict(color='tab:gray', marker='o', linestyle='--'),
          dict(color='tab:red', marker='^', linestyle='-'),
          dict(color='tab:blue', marker='s', linestyle='-.'),
          dict(color='tab:green', marker='D', linestyle=':'),
          dict(color='tab:purple', marker='v', linestyle='-'))


def arm_styles(labels: Sequence[str]) -> Dict[str, dict]:
    """A colour, marker and line style per arm, the first (the control) grey and dashed."""
    return {label: STYLES[0] if i == 0 else STYLES[1 + (i - 1) % (len(STYLES) - 1)]
            for i, label in enumerate(labels)}
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
    rows = [r for r in table.rows if r.gain.delta is not None]
    height = 1.0 + 0.42 * max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(WIDTH_INCHES, height))
    for y, row in enumerate(rows):
        has_ci = row.gain.ci_low is not None
        ax.errorbar(row.gain.delta, y, xerr=[[row.gain.delta - row.gain.ci_low if has_ci else 0],
                                        [row.gain.ci_high - row.gain.delta if has_ci else 0]],
                    fmt='s', capsize=3, markersize=5,
                    color=(INTERVAL_COLOURS.get(row.gain.level, 'tab:gray') if has_ci
                           else 'tab:gray'),
                    zorder=3)
        if row.gain.replicates:
            offsets = np.linspace(-0.18, 0.18, len(row.gain.replicates))
            ax.scatter(row.gain.replicates, y + offsets, s=10, color='black', alpha=0.7, zorder=4,
                       label='one replicate (arm minus control)' if y == 0 else None)
    ax.axvline(0, color='black', linewidth=0.8)
    ax.set_yticks(range(len(rows)), [row_label(r, protocol=True, separator='\n') for r in rows],
                  fontsize=FONT)
    ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
    ax.invert_yaxis()
    ax.tick_params(axis='x', labelsize=FONT)
    ax.set_xlabel('gain of the arm over its control (metric points): mean, 95% interval '
                  '(orange: conditional on one pretraining run per arm), each pair or seed',
                  fontsize=FONT)
    if rows and rows[0].gain.replicates:
        ax.legend(fontsize=FONT - 1, loc='best')
    ax.set_title('Gains over the control' if rows else 'no row with both arms',
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
    """Each arm's curves (the control first) as mean ± std."""
    styles = arm_styles(list(curves_by_arm))
    for arm, curves in curves_by_arm.items():
        steps, means, stds = _mean_band([c for c in curves if c])
        if not steps:
            continue
        style = styles[arm]
        ax.plot(steps, means, color=style['color'], linestyle=style['linestyle'],
                marker=style['marker'], markersize=3 if len(steps) > 12 else 4, linewidth=1.2,
                label=f'{arm} (mean of {len([c for c in curves if c])})')
        ax.fill_between(steps, np.subtract(means, stds), np.add(means, stds),
                        color=style['color'], alpha=0.18, linewidth=0)
    ax.set_xlabel(xlabel, fontsize=FONT)
    ax.set_ylabel(ylabel, fontsize=FONT)
    ax.tick_params(labelsize=FONT)


def _experiments(table: Table) -> List[Tuple[object, Dict[str, list], List[str]]]:
    """Per experiment: its first row, each arm's runs by label (the control first) and the
    metrics of its rows (interaction rows left out: their runs are the arms' own)."""
    found: Dict[int, list] = {}
    for row, (control, treated) in zip(table.rows, table.arms):
        if row.contrast or not (control or treated):
            continue
        entry = found.setdefault(id(control or treated), [row, {}, []])
        for runs in (control, treated):
            if runs:
                entry[1].setdefault(runs[0].change, runs)
        if row.metric not in entry[2]:
            entry[2].append(row.metric)
    return [tuple(entry) for entry in found.values()]


def plot_curves(table: Table, path: str) -> List[Path]:
    """Per experiment (one row of panels): the training loss and each tabulated metric over
    training, each arm as mean ± std over seeds. Written as ``path`` in PNG and PDF."""
    experiments = _experiments(table)
    columns = 1 + max((len(metrics) for *_, metrics in experiments), default=1)
    fig, axes = plt.subplots(max(len(experiments), 1), columns,
                             figsize=(WIDTH_INCHES, 2.1 * max(len(experiments), 1)),
                             squeeze=False)
    for line, (row, arms, metrics) in zip(axes, experiments):
        _draw(line[0], {a: [r.losses for r in runs] for a, runs in arms.items()},
              'training loss', 'iteration')
        line[0].set_title(row_label(replace(row, arm=''), metric=False, protocol=True),
                          fontsize=FONT, loc='left')
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
    for row, arms, metrics in _experiments(table):
        evaluated = [r for runs in arms.values() for r in runs if r.corruption_results]
        if not evaluated:
            continue
        present = {r['corruption'] for run in evaluated for r in run.corruption_results}
        shown = [f for f, names in families.items() if present & set(names)]
        for metric in metrics:
            if shown and not any(metric in r.robustness for r in evaluated):  # clean metrics
                lines.append((row, metric, arms, shown))
    if not lines:
        return []
    columns = max(len(shown) for *_, shown in lines)
    fig, axes = plt.subplots(len(lines), columns, squeeze=False,
                             figsize=(WIDTH_INCHES, 2.0 * len(lines)))
    for line, (row, metric, arms, shown) in zip(axes, lines):
        scale = 100.0 if row.task == 'detection' else 1.0   # mmdet logs fractions
        for ax, name in zip(line, shown):
            _draw(ax, {arm: [_family_curve(r.corruption_results, metric, families[name], scale)
                             for r in runs] for arm, runs in arms.items()},
                  metric, 'severity (0: clean)')
            ax.set_title(f'{row_label(replace(row, arm=""), metric=False)}: {name}',
                         fontsize=FONT - 1,
                         loc='left')
        for ax in line[len(shown):]:
            ax.axis('off')
        line[0].legend(fontsize=FONT - 1)
    return save_figure(fig, path)
