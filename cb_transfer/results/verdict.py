"""The verdict across the matrix, and the design each row needs.

Across the rows of one protocol and one arm (``+CB(mlp)``, ``+reg4``, an interaction contrast:
never two arms in one verdict), per task and over all its tasks, each row taken at the level
of its design (:mod:`.stats`: pretraining pairs, or independent seeds for runs from scratch):

- the mean gain over rows, with a stratified bootstrap interval: scipy's ``bootstrap`` resamples
  each row's replicates (its pairs' mean differences) within the row, percentile method, 10,000
  resamples, a fixed seed;
- the probability of improvement, P(arm > control) for a random row and a random replicate of each
  arm (ties count a half): each row's Mann-Whitney U over its arms' replicate means, averaged over
  the rows, with the same bootstrap (rliable's measure, computed here with scipy);
- which rows' gains survive a Holm correction over the family at 5% (the rows' p-values: the t
  test over pairs; Holm's step-down, which scipy does not offer).

Rows whose interval is *conditional* (one pretraining run per arm: only fine-tuning seeds vary)
form a family of their own, taken at the seed level and labelled as what it is: a verdict about
those checkpoints, not about the change. Robustness rows (mPC, rPC) are a family of their own
too: the
clean verdict's Holm correction is not diluted by them, nor theirs by it.

Per row, from its variance components and what its runs cost: the smallest gain its design
detects with 80% power, and the cheapest design (pairs R, seeds S) that detects a target gain.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import stats

from ..robustness.metrics import is_robustness
from .format import arm_text, row_label
from .stats import ALPHA, POWER, Components, Design, cheapest_design, minimum_detectable_gain

BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED = 10_000, 0
ABOUT_CHANGE, CONDITIONAL = 'about the change', 'conditional'


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


def _mean_gain(*replicates, axis: int = -1) -> np.ndarray:
    """Mean over rows of each row's mean paired difference (scipy's vectorised call adds
    resamples in front)."""
    return np.mean([np.mean(np.moveaxis(r, axis, -1), axis=-1) for r in replicates], axis=0)


def _improvement(*arms, axis: int = -1) -> np.ndarray:
    """Mean over rows of P(arm > control) for a random replicate of each, ties a half;
    ``arms`` alternate control, arm."""
    arms = [np.moveaxis(a, axis, -1) for a in arms]
    probabilities = []
    for control, treated in zip(arms[::2], arms[1::2]):
        greater = (treated[..., :, None] > control[..., None, :]).mean(axis=(-1, -2))
        ties = (treated[..., :, None] == control[..., None, :]).mean(axis=(-1, -2))
        probabilities.append(greater + 0.5 * ties)
    return np.mean(probabilities, axis=0)


def _interval(statistic, samples) -> Tuple[float, float]:
    result = stats.bootstrap(samples, statistic, n_resamples=BOOTSTRAP_RESAMPLES,
                             vectorized=True, method='percentile',
                             rng=np.random.default_rng(BOOTSTRAP_SEED))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def family(row) -> str:
    """'about the change' for rows replicated at the level of the design, 'conditional' for rows
    of one pretraining run per arm."""
    return CONDITIONAL if row.gain.conditional else ABOUT_CHANGE


def measure(row) -> str:
    """'clean' or 'robustness': the metric family a row belongs to."""
    return 'robustness' if is_robustness(row.metric) else 'clean'


MEASURES = ('clean', 'robustness')


@dataclass
class Verdict:
    """Across the rows of one protocol, arm, family and task (or all tasks of a protocol)."""
    protocol: str
    arm: str                         # the row's arm as the tables show it (format.arm_text)
    family: str                      # 'about the change' or 'conditional'
    measure: str                     # 'clean' or 'robustness'
    task: str                        # a task, or 'all tasks'
    rows: int                        # rows with both arms
    bootstrapped: int                # rows with at least two replicates (in the intervals)
    mean_gain: Optional[float]
    gain_ci: Optional[Tuple[float, float]]
    improvement: Optional[float]
    improvement_ci: Optional[Tuple[float, float]]
    surviving: List[str] = field(default_factory=list)   # rows significant after Holm
    tested: int = 0                  # rows with a p-value


def verdicts(rows: Sequence) -> List[Verdict]:
    """One verdict per (protocol, arm, family, measure, task) and per (protocol, arm, family,
    measure) over its tasks, for the rows that compare two arms."""
    compared = [r for r in rows if r.gain.delta is not None and r.gain.control_level
                and r.gain.treatment_level]
    out = []
    for protocol, arm in dict.fromkeys((r.protocol, arm_text(r)) for r in compared):
        for kind in (ABOUT_CHANGE, CONDITIONAL):
            for what in MEASURES:
                group = [r for r in compared if (r.protocol, arm_text(r)) == (protocol, arm)
                         and family(r) == kind and measure(r) == what]
                tested = [r for r in group if r.gain.p_value is not None]
                adjusted = dict(zip(map(id, tested), holm([r.gain.p_value for r in tested])))
                tasks = list(dict.fromkeys(r.task for r in group))
                groups = [(t, [r for r in group if r.task == t]) for t in tasks]
                if len(tasks) > 1:
                    groups.append(('all tasks', group))
                for task, members in groups:
                    out.append(_verdict(protocol, arm, kind, what, task, members, adjusted))
    return out


def _verdict(protocol: str, arm: str, kind: str, what: str, task: str, group: Sequence,
             adjusted: Dict[int, float]) -> Verdict:
    replicated = [r for r in group if len(r.gain.replicates) >= 2]
    verdict = Verdict(protocol, arm, kind, what, task, len(group), len(replicated),
                      float(np.mean([r.gain.delta for r in group])), None,
                      float(_improvement(*[np.array(a, float) for r in group for a in
                                           (r.gain.control_level, r.gain.treatment_level)])),
                      None,
                      tested=sum(id(r) in adjusted for r in group))
    if replicated:
        verdict.gain_ci = _interval(_mean_gain, [np.array(r.gain.replicates) for r in replicated])
        levels = [np.array(a, float) for r in replicated
                  for a in (r.gain.control_level, r.gain.treatment_level)]
        verdict.improvement_ci = _interval(_improvement, levels)
    verdict.surviving = [f'{row_label(r)} ({adjusted[id(r)]:.3g})' for r in group
                         if id(r) in adjusted and adjusted[id(r)] < ALPHA]
    return verdict


@dataclass
class RowDesign:
    """What a row's design can detect, and the cheapest design that detects a target gain."""
    label: str
    protocol: str
    level: str
    pairs: int
    seeds: int
    components: Components
    detectable: Optional[float]
    cost_pair: Optional[float]        # device-seconds: pretraining one pair (both arms)
    cost_seed: Optional[float]        # device-seconds: fine-tuning one seed of a pair (both arms)
    device: str = 'cpu'
    target_gain: Optional[float] = None
    cheapest: Optional[Design] = None


def row_design(row, target_gain: Optional[float] = None, pairs: Optional[int] = None,
               seeds: Optional[int] = None) -> Optional[RowDesign]:
    """The design figures of a row (None for a row without paired replicates). ``pairs`` and
    ``seeds``: the design to judge (default: the row's own)."""
    if row.gain.level not in ('pairs', 'seeds', 'conditional'):
        return None
    components = row.gain.components
    costs = row.costs or {}
    if row.gain.level == 'conditional':  # given this pair: its seeds are the replicates
        seeds = seeds or len(row.gain.replicates)
        return RowDesign(row_label(row), row.protocol, row.gain.level, 1, len(row.gain.replicates),
                         components, minimum_detectable_gain(Components(total=components.seeds),
                                                             seeds, 1),
                         costs.get('pair'), costs.get('seed'), costs.get('device', 'cpu'))
    own_pairs = row.gain.units
    own_seeds = row.gain.seeds_per_unit if row.gain.level == 'pairs' else 1
    pairs, seeds = pairs or own_pairs, seeds or own_seeds
    design = RowDesign(row_label(row), row.protocol, row.gain.level, own_pairs, own_seeds,
                       components, minimum_detectable_gain(components, pairs, seeds),
                       costs.get('pair'),
                       costs.get('seed'), costs.get('device', 'cpu'))
    if target_gain is not None and design.cost_pair is not None:
        design.target_gain = target_gain
        design.cheapest = cheapest_design(target_gain, components, design.cost_pair,
                                          design.cost_seed or 0.0,
                                          max_seeds=20 if design.cost_seed else 1)
    return design


__all__ = ['ALPHA', 'POWER', 'BOOTSTRAP_RESAMPLES', 'Verdict', 'verdicts', 'holm', 'RowDesign',
           'row_design', 'family']
