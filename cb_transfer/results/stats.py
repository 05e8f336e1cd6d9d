"""Statistics of an arm (several seeds) and of the gain of +CB over plain, with 95% intervals."""
import math
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

from scipy import stats


@dataclass
class ArmSummary:
    n: int
    mean: Optional[float]
    std: Optional[float]   # sample standard deviation (n - 1); None below two runs


@dataclass
class Gain:
    delta: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    method: str


def summarize(values: Sequence[float]) -> ArmSummary:
    n = len(values)
    if n == 0:
        return ArmSummary(0, None, None)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return ArmSummary(n, mean, std)


def paired_gain(plain: Dict[int, float], cb: Dict[int, float], confidence: float = 0.95) -> Gain:
    """The mean of the per-seed differences ``cb - plain`` over the seeds both arms ran, with a
    paired t interval (``scipy.stats.ttest_rel``). Pairing removes the seed's share of the
    run-to-run spread."""
    seeds = sorted(plain.keys() & cb.keys())
    diffs = [cb[s] - plain[s] for s in seeds]
    summary = summarize(diffs)
    if summary.n < 2:
        return Gain(summary.mean, None, None, f'paired, n={summary.n}: too few for an interval')
    if summary.std == 0:
        return Gain(summary.mean, summary.mean, summary.mean, f'paired, no spread over seeds {seeds}')
    ci = stats.ttest_rel([cb[s] for s in seeds], [plain[s] for s in seeds]).confidence_interval(
        confidence)
    return Gain(summary.mean, float(ci.low), float(ci.high), f'paired t over seeds {seeds}')


def unpaired_gain(plain: Sequence[float], cb: Sequence[float],
                  confidence: float = 0.95) -> Gain:
    """Difference of the means with Welch's t interval (``scipy.stats.ttest_ind``, unequal
    variances)."""
    p, c = summarize(plain), summarize(cb)
    if p.n == 0 or c.n == 0:
        return Gain(None, None, None, 'an arm has no runs')
    delta = c.mean - p.mean
    if p.n < 2 or c.n < 2:
        return Gain(delta, None, None, f'unpaired, n={p.n}/{c.n}: too few for an interval')
    if p.std == 0 and c.std == 0:
        return Gain(delta, delta, delta, 'Welch t (no spread)')
    ci = stats.ttest_ind(cb, plain, equal_var=False).confidence_interval(confidence)
    return Gain(delta, float(ci.low), float(ci.high), f'Welch t, n={p.n}/{c.n}')


def gain(plain: Sequence[Tuple[Optional[int], float]], cb: Sequence[Tuple[Optional[int], float]],
         confidence: float = 0.95) -> Gain:
    """Paired by seed where at least two seeds match (each once per arm), unpaired otherwise.

    Args:
        plain, cb: (seed, value) of each run of the arm.
    """
    plain_by_seed, cb_by_seed = dict(plain), dict(cb)
    unique = (len(plain_by_seed) == len(plain) and len(cb_by_seed) == len(cb))
    common = {s for s in plain_by_seed.keys() & cb_by_seed.keys() if s is not None}
    if unique and len(common) >= 2:
        return paired_gain({s: plain_by_seed[s] for s in common},
                           {s: cb_by_seed[s] for s in common}, confidence)
    return unpaired_gain([v for _, v in plain], [v for _, v in cb], confidence)
