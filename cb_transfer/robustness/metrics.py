"""P, mPC and rPC (Michaelis et al. 2019, "Benchmarking Robustness in Object Detection"; Kamann &
Rother 2020 for segmentation): P the clean metric, mPC its mean over the 15 benchmark corruptions
at severities 1 to 5, rPC = mPC / P. A subset of corruptions or severities gives the mean over
what was run, named as a subset: it is never called mPC."""
from typing import Dict, Iterable, Sequence, Tuple

import numpy as np

from .corruptions import BENCHMARK, SEVERITIES

CLEAN = 'clean'


def is_robustness(metric: str) -> bool:
    """Whether a metric's name is one of :func:`names`'."""
    return metric.endswith(('/mPC', '/rPC', ' subset)'))


def is_relative(metric: str) -> bool:
    """Whether a metric is relative to the clean one (rPC), a fraction."""
    return metric.endswith('/rPC') or '/relative (' in metric


def is_benchmark(corruptions: Sequence[str], severities: Sequence[int]) -> bool:
    """Whether the corruptions and severities are the benchmark's 15 x 5."""
    return set(corruptions) == set(BENCHMARK) and set(severities) == set(SEVERITIES)


def names(metric: str, corruptions: Sequence[str], severities: Sequence[int]
          ) -> Tuple[str, str]:
    """What the mean under corruption and the relative one are called for ``metric``."""
    if is_benchmark(corruptions, severities):
        return f'{metric}/mPC', f'{metric}/rPC'
    subset = f'{len(set(corruptions))}x{len(set(severities))} subset'
    return f'{metric}/corrupted ({subset})', f'{metric}/relative ({subset})'


def summarize(results: Iterable[dict], metrics: Sequence[str]) -> Dict[str, float]:
    """P, the mean under corruption and the relative one, per metric, from evaluation results
    ``{'corruption': name or 'clean', 'severity': s, 'metrics': {...}}``.

    Only the benchmark corruptions count in the mean (held-out ones are reported per corruption
    but never averaged into it, as in the benchmark); rPC is mPC / P, a fraction.
    """
    results = list(results)
    clean = next(r['metrics'] for r in results if r['corruption'] == CLEAN)
    corrupted = [r for r in results if r['corruption'] in BENCHMARK]
    corruptions = sorted({r['corruption'] for r in corrupted})
    severities = sorted({r['severity'] for r in corrupted})
    summary = {}
    for metric in metrics:
        if metric not in clean:
            continue
        mean_name, relative_name = names(metric, corruptions, severities)
        mean = float(np.mean([r['metrics'][metric] for r in corrupted]))
        summary[metric] = float(clean[metric])
        summary[mean_name] = mean
        summary[relative_name] = mean / clean[metric] if clean[metric] else float('nan')
    return summary
