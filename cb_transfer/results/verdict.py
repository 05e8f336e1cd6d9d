"""The verdict across the matrix, and how many seeds a row needs.

Across the rows of one protocol (per task, and over all its tasks):

- the mean gain over rows (each row's +CB mean minus plain mean), with a stratified bootstrap
  interval: scipy's ``bootstrap`` resamples the seeds of each row's arms independently (each arm
  of each row is its own sample), percentile method, 10,000 resamples, a fixed seed;
- the probability of improvement, P(+CB > plain) for a random row and a random seed of each arm
  (ties count a half): each row's Mann-Whitney U over n_plain x n_cb, averaged over the rows, with
  the same bootstrap (rliable's measure, computed here with scipy);
- which rows' gains survive a Holm correction over the rows at 5% (the rows' p-values: the paired
  t-test where seeds pair, Welch's otherwise; Holm's step-down, which scipy does not offer).

Per row, from the spread it observed: the smallest gain ``n`` seeds detect with 80% power in a
two-sided test at 5% (the paired t-test's noncentral t: noncentrality gain * sqrt(n) / sd of the
paired differences; two arms of n seeds each without pairing: gain / (sd * sqrt(2 / n))), and the
seeds needed to detect a gain the user names.
"""
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import optimize, stats

from .format import row_label

ALPHA, POWER = 0.05, 0.8
BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED = 10_000, 0
MAX_SEEDS = 1000


def _arm_values(row) -> Tuple[np.ndarray, np.ndarray]:
    return (np.array([v for _, v in row.plain_values], float),
            np.array([v for _, v in row.cb_values], float))


def _paired_differences(row) -> Optional[np.ndarray]:
    plain, cb = dict(row.plain_values), dict(row.cb_values)
    unique = len(plain) == len(row.plain_values) and len(cb) == len(row.cb_values)
    seeds = sorted(s for s in plain.keys() & cb.keys() if s is not None)
    if not unique or len(seeds) < 2:
        return None
    return np.array([cb[s] - plain[s] for s in seeds])


def row_p_value(row) -> Optional[float]:
    """Two-sided p-value of the row's gain: paired t where the seeds pair, else Welch's t."""
    diffs = _paired_differences(row)
    if diffs is not None:
        if np.all(diffs == diffs[0]):
            return 0.0 if diffs[0] != 0 else 1.0
        return float(stats.ttest_1samp(diffs, 0.0).pvalue)
    plain, cb = _arm_values(row)
    if len(plain) < 2 or len(cb) < 2:
        return None
    return float(stats.ttest_ind(cb, plain, equal_var=False).pvalue)


def holm(p_values: Sequence[float]) -> List[float]:
    """Holm's step-down adjusted p-values (same order as given)."""
    order = np.argsort(p_values)
    m = len(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def _mean_gain(*arms, axis: int = -1) -> np.ndarray:
    """Mean over rows of (+CB mean - plain mean); ``arms`` alternate plain, +CB, each with the
    seeds along ``axis`` (scipy's vectorised call adds resamples in front)."""
    arms = [np.moveaxis(a, axis, -1) for a in arms]
    return np.mean([np.mean(cb, axis=-1) - np.mean(plain, axis=-1)
                    for plain, cb in zip(arms[::2], arms[1::2])], axis=0)


def _improvement(*arms, axis: int = -1) -> np.ndarray:
    """Mean over rows of P(+CB > plain) for a random seed of each arm, ties a half."""
    arms = [np.moveaxis(a, axis, -1) for a in arms]
    probabilities = []
    for plain, cb in zip(arms[::2], arms[1::2]):
        greater = (cb[..., :, None] > plain[..., None, :]).mean(axis=(-1, -2))
        ties = (cb[..., :, None] == plain[..., None, :]).mean(axis=(-1, -2))
        probabilities.append(greater + 0.5 * ties)
    return np.mean(probabilities, axis=0)


@dataclass
class Verdict:
    """Across the rows of one protocol and task (or all tasks of a protocol)."""
    protocol: str
    task: str                        # a task, or 'all tasks'
    rows: int                        # rows with both arms
    bootstrapped: int                # rows with at least two seeds per arm (in the intervals)
    mean_gain: Optional[float]
    gain_ci: Optional[Tuple[float, float]]
    improvement: Optional[float]
    improvement_ci: Optional[Tuple[float, float]]
    surviving: List[str] = field(default_factory=list)   # rows significant after Holm
    tested: int = 0                  # rows with a p-value


def _interval(statistic, arms) -> Tuple[float, float]:
    result = stats.bootstrap(arms, statistic, n_resamples=BOOTSTRAP_RESAMPLES, vectorized=True,
                             method='percentile', rng=np.random.default_rng(BOOTSTRAP_SEED))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def verdicts(rows: Sequence) -> List[Verdict]:
    """One verdict per (protocol, task) and per protocol over its tasks, for the rows that
    compare two arms."""
    compared = [r for r in rows if r.plain_values and r.cb_values]
    p_values = {id(r): row_p_value(r) for r in compared}
    out = []
    for protocol in dict.fromkeys(r.protocol for r in compared):
        family = [r for r in compared if r.protocol == protocol]
        tested = [r for r in family if p_values[id(r)] is not None]
        adjusted = dict(zip(map(id, tested), holm([p_values[id(r)] for r in tested])))
        tasks = list(dict.fromkeys(r.task for r in family))
        groups = [(t, [r for r in family if r.task == t]) for t in tasks]
        if len(tasks) > 1:
            groups.append(('all tasks', family))
        for task, group in groups:
            out.append(_verdict(protocol, task, group, adjusted))
    return out


def _verdict(protocol: str, task: str, group: Sequence, adjusted: Dict[int, float]) -> Verdict:
    arms = []
    for row in group:
        plain, cb = _arm_values(row)
        if len(plain) >= 2 and len(cb) >= 2:
            arms += [plain, cb]
    all_arms = [a for r in group for a in _arm_values(r)]
    verdict = Verdict(protocol, task, len(group), len(arms) // 2,
                      float(_mean_gain(*all_arms)), None, float(_improvement(*all_arms)), None,
                      tested=sum(id(r) in adjusted for r in group))
    if arms:
        verdict.gain_ci = _interval(_mean_gain, arms)
        verdict.improvement_ci = _interval(_improvement, arms)
    verdict.surviving = [f'{row_label(r)} ({adjusted[id(r)]:.3g})' for r in group
                         if id(r) in adjusted and adjusted[id(r)] < ALPHA]
    return verdict


def power(gain: float, sd: float, n: int, paired: bool = True,
          alpha: float = ALPHA) -> float:
    """Power of the two-sided t-test at ``alpha`` to detect ``gain`` with ``n`` seeds per arm:
    paired (``sd`` of the paired differences) or two independent arms (``sd`` of either arm)."""
    if n < 2:
        return 0.0
    if paired:
        dof, noncentrality = n - 1, gain * math.sqrt(n) / sd
    else:
        dof, noncentrality = 2 * n - 2, gain / (sd * math.sqrt(2 / n))
    critical = stats.t.ppf(1 - alpha / 2, dof)
    upper = stats.nct.sf(critical, dof, noncentrality)
    lower = stats.nct.cdf(-critical, dof, noncentrality)
    if not np.isfinite(upper):
        # scipy's noncentral t gives NaN far out in the tail (seen at 1 degree of freedom and a
        # noncentrality of 80): the distribution then lies wholly on one side of the value
        upper = 1.0 if noncentrality > critical else 0.0
    if not np.isfinite(lower):
        lower = 1.0 if noncentrality < -critical else 0.0
    return float(min(upper + lower, 1.0))


def minimum_detectable_gain(sd: float, n: int, paired: bool = True,
                            target_power: float = POWER) -> Optional[float]:
    """The smallest gain ``n`` seeds detect with ``target_power``."""
    if n < 2 or sd <= 0:
        return None
    high = sd
    while power(high, sd, n, paired) < target_power:
        high *= 2
    return float(optimize.brentq(lambda g: power(g, sd, n, paired) - target_power, 0.0, high,
                                 xtol=1e-10))


def seeds_needed(gain: float, sd: float, paired: bool = True,
                 target_power: float = POWER) -> Optional[int]:
    """The fewest seeds per arm that detect ``gain`` with ``target_power`` (None: more than
    MAX_SEEDS)."""
    if sd <= 0:
        return 2
    for n in range(2, MAX_SEEDS + 1):
        if power(gain, sd, n, paired) >= target_power:
            return n
    return None


@dataclass
class RowPower:
    label: str
    protocol: str
    paired: bool
    n: int
    sd: float                  # of the paired differences, or pooled over the arms
    detectable: Optional[float]
    target_gain: Optional[float] = None
    seeds_for_target: Optional[int] = None


def row_power(row, target_gain: Optional[float] = None) -> Optional[RowPower]:
    """The power figures of a row from its observed spread (None below two seeds per arm)."""
    diffs = _paired_differences(row)
    if diffs is not None:
        n, sd, paired = len(diffs), float(np.std(diffs, ddof=1)), True
    else:
        plain, cb = _arm_values(row)
        if len(plain) < 2 or len(cb) < 2:
            return None
        n, paired = min(len(plain), len(cb)), False
        sd = float(math.sqrt((np.var(plain, ddof=1) + np.var(cb, ddof=1)) / 2))
    result = RowPower(row_label(row), row.protocol, paired, n, sd,
                      minimum_detectable_gain(sd, n, paired))
    if target_gain is not None:
        result.target_gain = target_gain
        result.seeds_for_target = seeds_needed(target_gain, sd, paired)
    return result
