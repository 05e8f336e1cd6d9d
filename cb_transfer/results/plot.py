"""Plots of the gains (with their intervals) and, optionally, of both arms' metric curves."""
from collections import defaultdict
from typing import Dict, List

import matplotlib

matplotlib.use('Agg')  # files only; no display
import matplotlib.pyplot as plt  # noqa: E402

from .table import Table  # noqa: E402

WIDTH_INCHES, DPI = 10, 100


def _label(row) -> str:
    variant = '' if row.cb_options in ('-', 'mlp') else f' [{row.cb_options}]'
    return f'{row.model} {row.arch.split("(")[0]} {row.schedule} {row.metric}{variant}'


def _curve(runs, metric: str) -> Dict[int, float]:
    """The arm's metric at each evaluated step, averaged over its runs."""
    values: Dict[int, List[float]] = defaultdict(list)
    for run in runs:
        for step, metrics in run.evaluations.items():
            if metric in metrics:
                values[step].append(metrics[metric])
    return {step: sum(v) / len(v) for step, v in sorted(values.items())}


def plot_table(table: Table, path: str, curves: bool = False) -> None:
    """Write a PNG ``WIDTH_INCHES * DPI`` pixels wide: the gain of each pair with its 95%
    interval, and with ``curves`` one panel per pair with both arms' metric over training."""
    rows = [r for r in table.rows if r.delta is not None]
    panels = 1 + (len(rows) if curves else 0)
    gain_height = 1.2 + 0.45 * max(len(rows), 1)
    heights = [gain_height] + [2.6] * (panels - 1)
    fig, axes = plt.subplots(panels, 1, figsize=(WIDTH_INCHES, sum(heights)),
                             gridspec_kw=dict(height_ratios=heights), squeeze=False)
    ax = axes[0][0]
    for y, row in enumerate(rows):
        low = row.delta - row.ci_low if row.ci_low is not None else 0
        high = row.ci_high - row.delta if row.ci_high is not None else 0
        ax.errorbar(row.delta, y, xerr=[[low], [high]], fmt='o', capsize=4,
                    color='tab:blue' if row.ci_low is not None else 'tab:gray')
    ax.axvline(0, color='black', linewidth=0.8)
    ax.set_yticks(range(len(rows)), [_label(r) for r in rows], fontsize=8)
    ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
    ax.invert_yaxis()
    ax.set_xlabel('gain of +CB over plain (points, 95% interval; grey: no interval)')
    ax.set_title('Context Broadcasting: downstream gains' if rows else 'no pair to plot')

    if curves:
        pairs = [arms for row, arms in zip(table.rows, table.arms) if row.delta is not None]
        for panel, row, (plain, cb) in zip(axes[1:], rows, pairs):
            ax = panel[0]
            for name, runs, colour in (('plain', plain, 'tab:gray'), ('+CB', cb, 'tab:red')):
                curve = _curve(runs, row.metric)
                if curve:
                    ax.plot(list(curve), list(curve.values()), marker='o', color=colour,
                            label=f'{name} (mean of {len(runs)})')
            ax.set_title(_label(row), fontsize=9)
            ax.set_xlabel('iteration / epoch')
            ax.set_ylabel(row.metric)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
