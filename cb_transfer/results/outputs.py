"""What a suite leaves in its work dir when it ends: the table, its figures and the report."""
import json
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from .plot import plot_curves, plot_gains, plot_robustness
from .report import write_report
from .runs import Run
from .table import build_table, to_json, to_markdown


def write_suite_outputs(root: Path, runs: Sequence[Run], problems: Sequence[str] = (),
                        pending: Sequence[str] = (), target_gain: Optional[float] = 0.5,
                        title: str = '') -> Tuple[Dict[str, Path], bool]:
    """Write ``results.md``, ``results.json``, ``gains``, ``curves`` and (where runs were
    evaluated under corruption) ``robustness`` (PNG and PDF), ``robustness.json`` (every run's
    evaluations, per corruption and severity) and ``report.md`` into ``root``.

    Args:
        runs: The suite's finished runs (read from their records).
        problems: What could not be read, noted under the table.
        pending: The planned runs that have not finished: listed, never tabulated.

    Returns:
        ({file name: path}, whether any row has a number).
    """
    table = build_table(runs, problems)
    markdown = to_markdown(table, reference=True)
    if pending:
        markdown += (f'\nNot finished ({len(pending)}), not in the table:\n'
                     + ''.join(f'- {name}\n' for name in pending))
    written = {'results.md': root / 'results.md', 'results.json': root / 'results.json'}
    written['results.md'].write_text(markdown)
    written['results.json'].write_text(to_json(table))
    figures = plot_gains(table, str(root / 'gains.png')) + \
        plot_curves(table, str(root / 'curves.png')) + \
        plot_robustness(table, str(root / 'robustness.png'))
    written.update({f.name: f for f in figures})
    evaluated = {run.name or run.path: run.corruption_results for run in runs
                 if run.corruption_results}
    if evaluated:
        written['robustness.json'] = root / 'robustness.json'
        written['robustness.json'].write_text(json.dumps(evaluated, indent=1))
    written['report.md'] = write_report(root, table, figures, pending, target_gain,
                                        title or root.name)
    tabulated = any(r.control_mean is not None or r.treatment_mean is not None for r in table.rows)
    return written, tabulated
