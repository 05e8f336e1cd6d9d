"""Statistics of a row at the level of its design: the arms, the gain of +CB over plain with its
interval, the variance components, and the power and cost of a design.

The design (docs/design.md, "Replication"): fine-tuning seeds are nested in pretraining pairs. Each run
is a value keyed by ``(unit, seed)``. The *unit* is what is replicated independently: a
pretraining pair (the plain and the +CB model pretrained with one seed), or, for runs trained from
scratch, the seed itself; ``None`` is one fixed pair of checkpoints (files, or one pretraining
run per arm), of which there is only one.

- The gain is the mean over units of the mean paired difference (+CB minus plain) over the seeds
  both arms ran in that unit.
- Its interval is a t interval over the unit means (R - 1 degrees of freedom,
  ``scipy.stats.ttest_1samp``): the pair is the unit because pretraining is the largest source of
  variance, and the fine-tuning seeds of one pair share their two checkpoints, so they are not
  independent replicates of the comparison. (Why t and not a two-level bootstrap: with R = 2 to 5
  pairs a bootstrap over pairs has only R^R distinct resamples and under-covers; the t interval
  over unit means is exact under normality for any number of seeds per pair, and the simulation
  in the tests shows its coverage.)
- With one unit, the interval is a paired t over its seeds (``scipy.stats.ttest_rel``) and is
  *conditional*: it covers fine-tuning noise only, given one pretraining run per arm.
- Without matching seeds, the arms are compared unpaired (Welch, ``scipy.stats.ttest_ind``).
- The variance components of the paired difference, from the one-way random-effects ANOVA
  (pairs random, seeds within pairs): between fine-tuning seeds ``MSW``, between pairs
  ``max(0, (MSB - MSW) / n0)``.
- A design of R pairs and S seeds estimates the gain with variance
  ``sigma2_pairs / R + sigma2_seeds / (R S)`` on R - 1 degrees of freedom; its power is the
  noncentral t's.
"""
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import optimize, stats

ALPHA, POWER = 0.05, 0.8
CONDITIONAL = 'conditional on one pretraining run per arm (fine-tuning noise only)'
Values = Sequence[Tuple[Optional[int], Optional[int], float]]   # (unit, seed, value)


@dataclass
class ArmSummary:
    n: int
    mean: Optional[float]
    std: Optional[float]   # sample standard deviation (n - 1); None below two runs


NO_SPREAD = 'the replicates do not vary (a metric logged coarsely?): no interval'


def _constant(values: Sequence[float]) -> bool:
    """Whether values are equal up to rounding (mmdet logs AP to three decimals, so equal
    differences are common and may differ in their last bits)."""
    values = np.asarray(values, float)
    return bool(np.ptp(values) <= 1e-9 * max(1.0, float(np.abs(values).max())))


def summarize(values: Sequence[float]) -> ArmSummary:
    n = len(values)
    if n == 0:
        return ArmSummary(0, None, None)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return ArmSummary(n, mean, std)


@dataclass
class Components:
    """Variance components of the paired difference (+CB minus plain), in squared metric points.

    ``pairs``: between pretraining pairs; ``seeds``: between fine-tuning seeds within a pair;
    ``total``: the variance of one unit's difference where the two cannot be told apart (one
    seed per pair). None where the design cannot estimate it.
    """
    pairs: Optional[float] = None
    seeds: Optional[float] = None
    total: Optional[float] = None

    def unit_variance(self, seeds: int) -> Optional[float]:
        """The variance of a unit's mean difference over ``seeds`` fine-tuning seeds."""
        if self.pairs is not None and self.seeds is not None:
            return self.pairs + self.seeds / seeds
        return self.total


@dataclass
class Gain:
    """The gain of a row and what it rests on.

    Attributes:
        level: 'pairs' (t over pretraining pairs), 'seeds' (t over independent seeds: runs from
            scratch), 'conditional' (t over the seeds of one pair), 'unpaired' (Welch) or ''
            (no interval).
        units: The replicates the interval is over (pairs, or seeds).
        seeds_per_unit: Fine-tuning seeds per pair (the fewest, where they differ).
        replicates: The paired differences at the interval's level (per pair, or per seed).
        control_level, treatment_level: Each arm's values at that level (means over a pair's seeds).
    """
    delta: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    method: str
    level: str = ''
    units: int = 0
    seeds_per_unit: int = 0
    conditional: bool = False
    p_value: Optional[float] = None
    replicates: List[float] = field(default_factory=list)
    control_level: List[float] = field(default_factory=list)
    treatment_level: List[float] = field(default_factory=list)
    components: Components = field(default_factory=Components)


def paired_gain(control: Dict[int, float], treatment: Dict[int, float],
                confidence: float = 0.95) -> Gain:
    """The mean of the per-seed differences ``treatment - control`` over the seeds both arms ran,
    with a paired t interval (``scipy.stats.ttest_rel``). Pairing removes the seed's share of the
    run-to-run spread."""
    seeds = sorted(control.keys() & treatment.keys())
    diffs = [treatment[s] - control[s] for s in seeds]
    summary = summarize(diffs)
    gain = Gain(summary.mean, None, None, f'paired, n={summary.n}: too few for an interval',
                level='', units=summary.n, replicates=diffs,
                control_level=[control[s] for s in seeds],
                treatment_level=[treatment[s] for s in seeds])
    if summary.n < 2:
        return gain
    gain.level, gain.method = 'seeds', f'paired t over seeds {seeds}'
    if _constant(diffs):
        gain.method += f'; {NO_SPREAD}'
        return gain
    result = stats.ttest_rel([treatment[s] for s in seeds], [control[s] for s in seeds])
    ci = result.confidence_interval(confidence)
    gain.ci_low, gain.ci_high, gain.p_value = float(ci.low), float(ci.high), float(result.pvalue)
    return gain


def unpaired_gain(control: Sequence[float], treatment: Sequence[float],
                  confidence: float = 0.95) -> Gain:
    """Difference of the means with Welch's t interval (``scipy.stats.ttest_ind``, unequal
    variances)."""
    p, c = summarize(control), summarize(treatment)
    if p.n == 0 or c.n == 0:
        return Gain(None, None, None, 'an arm has no runs')
    gain = Gain(c.mean - p.mean, None, None, f'unpaired, n={p.n}/{c.n}: too few for an interval',
                control_level=list(control), treatment_level=list(treatment))
    if p.n < 2 or c.n < 2:
        return gain
    gain.level, gain.method = 'unpaired', f'Welch t, n={p.n}/{c.n}'
    if _constant(control) and _constant(treatment):
        gain.method += f'; {NO_SPREAD}'
        return gain
    result = stats.ttest_ind(treatment, control, equal_var=False)
    ci = result.confidence_interval(confidence)
    gain.ci_low, gain.ci_high, gain.p_value = float(ci.low), float(ci.high), float(result.pvalue)
    return gain


def variance_components(differences: Dict[Optional[int], List[float]]) -> Components:
    """One-way random-effects estimates from the paired differences of each unit's seeds."""
    groups = [np.asarray(d, float) for d in differences.values() if len(d)]
    k, n = len(groups), sum(len(g) for g in groups)
    if k >= 2 and n > k:
        grand = np.concatenate(groups).mean()
        within = sum(((g - g.mean()) ** 2).sum() for g in groups) / (n - k)
        between = sum(len(g) * (g.mean() - grand) ** 2 for g in groups) / (k - 1)
        n0 = (n - sum(len(g) ** 2 for g in groups) / n) / (k - 1)
        return Components(pairs=float(max(0.0, (between - within) / n0)), seeds=float(within))
    if k >= 2:  # one seed per unit: the two are not separable
        return Components(total=float(np.var([g[0] for g in groups], ddof=1)))
    if k == 1 and n >= 2:
        return Components(seeds=float(np.var(groups[0], ddof=1)))
    return Components()


def gain(control: Values, treatment: Values, units_are_pairs: bool = True,
         confidence: float = 0.95) -> Gain:
    """The gain of the treatment over the control at the level of the design (see the module's
    docstring).

    Args:
        control, treatment: (unit, seed, value) of each run of the arm.
        units_are_pairs: The units are pretraining pairs (else independent seeds, each its own
            unit: runs from scratch).
    """
    p = {(u, s): v for u, s, v in control}
    c = {(u, s): v for u, s, v in treatment}
    unique = len(p) == len(control) and len(c) == len(treatment)
    common = sorted((k for k in p.keys() & c.keys() if k[1] is not None), key=str) \
        if unique else []
    if not common:
        return unpaired_gain([v for _, _, v in control], [v for _, _, v in treatment], confidence)
    by_unit: Dict[Optional[int], List[float]] = defaultdict(list)
    arms: Dict[Optional[int], Tuple[List[float], List[float]]] = defaultdict(lambda: ([], []))
    for key in common:
        by_unit[key[0]].append(c[key] - p[key])
        arms[key[0]][0].append(p[key])
        arms[key[0]][1].append(c[key])
    components = variance_components(by_unit)
    if len(by_unit) == 1:  # one pair (or one pair of files): its seeds, conditionally
        ((unit, _),) = by_unit.items()
        result = paired_gain({s: p[(u, s)] for u, s in common}, {s: c[(u, s)] for u, s in common},
                             confidence)
        result.components, result.seeds_per_unit = components, len(common)
        if units_are_pairs or unit is None:
            result.conditional = True
            result.level = 'conditional' if result.level else ''
            result.method += f'; {CONDITIONAL}'
        return result
    means = {u: float(np.mean(d)) for u, d in by_unit.items()}
    units = sorted(means, key=str)
    d = np.array([means[u] for u in units])
    seeds = sorted({len(v) for v in by_unit.values()})
    per_unit = f'{seeds[0]} seed{"s" * (seeds[0] > 1)} each' if len(seeds) == 1 else \
        f'{seeds[0]}-{seeds[-1]} seeds'
    result = Gain(float(d.mean()), None, None, '', level='pairs' if units_are_pairs else 'seeds',
                  units=len(units), seeds_per_unit=seeds[0], replicates=d.tolist(),
                  control_level=[float(np.mean(arms[u][0])) for u in units],
                  treatment_level=[float(np.mean(arms[u][1])) for u in units],
                  components=components)
    result.method = (f'paired t over {len(units)} pretraining pairs ({per_unit})'
                     if units_are_pairs else f'paired t over seeds {units}')
    if _constant(d):
        result.method += f'; {NO_SPREAD}'
        return result
    test = stats.ttest_1samp(d, 0.0)
    ci = test.confidence_interval(confidence)
    result.ci_low, result.ci_high, result.p_value = float(ci.low), float(ci.high), \
        float(test.pvalue)
    return result


# ---- power and cost of a design -------------------------------------------------------------

def power(gain: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided one-sample t-test at ``alpha`` to detect a mean ``gain`` from
    ``n`` replicates whose standard deviation is ``sd`` (the paired design's test)."""
    if n < 2:
        return 0.0
    if sd <= 0:
        return 1.0 if gain != 0 else 0.0
    dof, noncentrality = n - 1, gain * math.sqrt(n) / sd
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


def design_power(gain: float, components: Components, pairs: int, seeds: int) -> Optional[float]:
    """Power of R = ``pairs`` units of S = ``seeds`` seeds each to detect ``gain``."""
    variance = components.unit_variance(seeds)
    if variance is None:
        return None
    return power(gain, math.sqrt(variance), pairs)


def minimum_detectable_gain(components: Components, pairs: int, seeds: int,
                            target_power: float = POWER) -> Optional[float]:
    """The smallest gain R pairs of S seeds detect with ``target_power``."""
    variance = components.unit_variance(seeds)
    if variance is None or pairs < 2:
        return None
    if variance <= 0:
        return 0.0
    sd = math.sqrt(variance)
    high = sd
    while power(high, sd, pairs) < target_power:
        high *= 2
    return float(optimize.brentq(lambda g: power(g, sd, pairs) - target_power, 0.0, high,
                                 xtol=1e-10))


@dataclass
class Design:
    """A design (R pairs, S seeds a pair) and what it costs and buys."""
    pairs: int
    seeds: int
    power: float
    cost: float      # device-seconds


def cheapest_design(gain: float, components: Components, cost_pair: float, cost_seed: float,
                    max_pairs: int = 100, max_seeds: int = 20,
                    target_power: float = POWER) -> Optional[Design]:
    """The design of least cost that detects ``gain`` with ``target_power``.

    Args:
        cost_pair: What one more pair costs besides its fine-tuning (its pretraining).
        cost_seed: What one fine-tuning seed of one pair costs (both arms).
        max_seeds: Seeds a pair may have; 1 where seeds and pairs are not separable.
    """
    if components.pairs is None or components.seeds is None:
        if components.total is None:
            return None
        max_seeds = 1  # only the variance of one seed's difference is known
    best = None
    for seeds in range(1, max_seeds + 1):
        for pairs in range(2, max_pairs + 1):
            achieved = design_power(gain, components, pairs, seeds)
            if achieved >= target_power:
                cost = pairs * cost_pair + pairs * seeds * cost_seed
                if best is None or cost < best.cost:
                    best = Design(pairs, seeds, achieved, cost)
                break
    return best
