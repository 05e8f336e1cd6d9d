"""The statistics of the two-level design (pretraining pairs, fine-tuning seeds nested in them),
the verdict across the matrix and the design figures against direct computations and a
simulation, and a real suite's report with every section and real figures."""
import json
import struct
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from cb_transfer.results.stats import (CONDITIONAL, Components, cheapest_design, design_power,
                                       gain, minimum_detectable_gain, power, variance_components)
from cb_transfer.results.verdict import holm, row_design, verdicts


def values(by_pair):
    """{pair: [value of seed 0, seed 1, ...]} as (unit, seed, value)."""
    return [(pair, seed, v) for pair, vs in by_pair.items() for seed, v in enumerate(vs)]


def row(plain, cb, task='segmentation', protocol='two-stage', metric='mIoU', model='UPerNet',
        pairs=True, costs=None, arm='+CB(mlp)'):
    """A table row as the verdict and the design read it (the gain from cb_transfer's own
    statistics)."""
    return SimpleNamespace(task=task, protocol=protocol, metric=metric, model=model,
                           arch='deit_small_patch16_224', schedule='160k', arm=arm,
                           costs=costs or {}, gain=gain(plain, cb, units_are_pairs=pairs))


# two pretraining pairs of two fine-tuning seeds: a fixture small enough to compute by hand
PLAIN_RS = {0: [40.0, 41.0], 1: [42.0, 42.0]}
CB_RS = {0: [41.0, 43.0], 1: [42.5, 42.0]}   # differences: pair 0: 1, 2; pair 1: 0.5, 0


def test_the_gain_over_pairs_equals_a_hand_computation():
    g = gain(values(PLAIN_RS), values(CB_RS))
    # pair means of the paired differences: 1.5 and 0.25; the gain their mean
    assert g.replicates == [1.5, 0.25] and g.delta == pytest.approx(0.875)
    assert (g.level, g.units, g.seeds_per_unit, g.conditional) == ('pairs', 2, 2, False)
    # t over the two pair means, one degree of freedom
    se = np.std([1.5, 0.25], ddof=1) / np.sqrt(2)
    half = stats.t.ppf(0.975, 1) * se
    assert (g.ci_low, g.ci_high) == pytest.approx((0.875 - half, 0.875 + half))
    assert g.p_value == pytest.approx(2 * stats.t.sf(0.875 / se, 1))
    assert g.method == 'paired t over 2 pretraining pairs (2 seeds each)'
    # one-way random effects by hand: within-pair variance (0.5 + 0.125) / 2, between-pair mean
    # square 2 * var([1.5, 0.25]), n0 = 2
    within = ((1 - 1.5) ** 2 + (2 - 1.5) ** 2 + (0.5 - 0.25) ** 2 + (0 - 0.25) ** 2) / 2
    between = 2 * np.var([1.5, 0.25], ddof=1)
    assert g.components.seeds == pytest.approx(within)
    assert g.components.pairs == pytest.approx((between - within) / 2)
    assert g.control_level == [40.5, 42.0] and g.treatment_level == [42.0, 42.25]


def test_one_pair_gives_an_interval_over_seeds_labelled_conditional():
    g = gain(values({0: PLAIN_RS[0] + [41.5]}), values({0: CB_RS[0] + [42.0]}))
    ci = stats.ttest_rel([41.0, 43.0, 42.0], [40.0, 41.0, 41.5]).confidence_interval()
    assert g.conditional and g.level == 'conditional' and CONDITIONAL in g.method
    assert g.method.startswith('paired t over seeds [0, 1, 2]')
    assert (g.ci_low, g.ci_high) == pytest.approx((ci.low, ci.high))
    assert g.components.pairs is None and g.components.seeds == pytest.approx(
        np.var([1.0, 2.0, 0.5], ddof=1))
    # runs from scratch: the seeds are independent replicates, nothing conditional
    scratch = gain([(s, s, v) for s, v in enumerate([40.0, 41.0, 41.5])],
                   [(s, s, v) for s, v in enumerate([41.0, 43.0, 42.0])], units_are_pairs=False)
    assert scratch.level == 'seeds' and not scratch.conditional
    assert (scratch.ci_low, scratch.ci_high) == pytest.approx((ci.low, ci.high))
    assert scratch.method == 'paired t over seeds [0, 1, 2]'


def simulate_suites(rng, n: int, pairs: int, seeds: int, gain_: float, sd_pairs: float,
                    sd_seeds: float):
    """Arms' values of ``n`` simulated suites: each arm's pretraining run shifts all its
    fine-tuning runs (so the paired difference varies between pairs by sd_pairs), each
    fine-tuning run adds its own noise (sd_seeds on the difference)."""
    pair_effect = rng.normal(0, sd_pairs / np.sqrt(2), size=(n, 2, pairs, 1))
    seed_effect = rng.normal(0, sd_seeds / np.sqrt(2), size=(n, 2, pairs, seeds))
    arms = 40.0 + pair_effect + seed_effect
    arms[:, 1] += gain_
    return arms


def test_simulated_suites_cover_the_true_gain_at_the_pair_level_but_not_as_independent_runs():
    """R=3 pairs of S=2 seeds, the paired difference varying 0.8 between pairs and 0.3 between
    seeds: the pair-level interval covers the true gain about 95% of the time; treating the six
    fine-tuning runs as independent replicates visibly under-covers; the variance components
    come back."""
    rng = np.random.default_rng(0)
    true_gain, sd_pairs, sd_seeds, n = 0.5, 0.8, 0.3, 2000
    arms = simulate_suites(rng, n, 3, 2, true_gain, sd_pairs, sd_seeds)
    covered, naive_covered, pair_variances, seed_variances = 0, 0, [], []
    for plain, cb in arms:
        g = gain(values(dict(enumerate(plain.tolist()))), values(dict(enumerate(cb.tolist()))))
        covered += g.ci_low <= true_gain <= g.ci_high
        naive = stats.ttest_rel(cb.ravel(), plain.ravel()).confidence_interval()
        naive_covered += naive.low <= true_gain <= naive.high
        pair_variances.append(g.components.pairs)
        seed_variances.append(g.components.seeds)
    assert abs(covered / n - 0.95) < 0.015
    assert naive_covered / n < 0.85
    assert np.mean(seed_variances) == pytest.approx(sd_seeds ** 2, rel=0.1)
    # the estimate is cut at zero, which biases it up a little with three pairs
    assert np.mean(pair_variances) == pytest.approx(sd_pairs ** 2, rel=0.15)
    # and on one large design, each within a few percent
    (plain, cb), = simulate_suites(rng, 1, 400, 5, true_gain, sd_pairs, sd_seeds)
    big = gain(values(dict(enumerate(plain.tolist()))), values(dict(enumerate(cb.tolist()))))
    assert big.components.pairs == pytest.approx(sd_pairs ** 2, rel=0.15)
    assert big.components.seeds == pytest.approx(sd_seeds ** 2, rel=0.1)


def test_variance_components_without_seeds_within_pairs_are_not_separated():
    c = variance_components({0: [1.0], 1: [2.0], 2: [0.0]})
    assert c.pairs is None and c.seeds is None and c.total == pytest.approx(1.0)
    assert variance_components({0: [1.0]}) == Components()


# ---- the verdict across the matrix ------------------------------------------------------------

A = row(values({0: [42.1, 42.9], 1: [42.4, 42.0], 2: [41.8, 42.3]}),
        values({0: [42.6, 43.1], 1: [43.0, 42.2], 2: [42.5, 42.6]}))
B = row(values({0: [40.0, 40.3], 1: [40.1, 40.2], 2: [40.4, 40.0]}),
        values({0: [40.1, 40.0], 1: [40.4, 40.6], 2: [40.3, 40.5]}), model='Semantic FPN')
C = row(values({0: [3.1, 3.0], 1: [3.2, 3.3]}), values({0: [3.3, 3.4], 1: [3.5, 3.3]}),
        task='detection', metric='coco/bbox_mAP', model='MaskRCNN')
ONE_PAIR = row(values({0: [30.0, 31.0, 30.5]}), values({0: [31.0, 31.5, 31.2]}),
               model='Semantic FPN', metric='mAcc')
ROWS = [A, B, C, ONE_PAIR]


def test_mean_gain_and_its_stratified_bootstrap_equal_scipy_on_the_pairs():
    by = {(v.family, v.task): v for v in verdicts(ROWS)}
    seg = by[('about the change', 'segmentation')]
    assert seg.rows == 2 and seg.mean_gain == pytest.approx(np.mean([A.gain.delta, B.gain.delta]))

    def mean_gain(a, b, axis=-1):
        return (a.mean(axis) + b.mean(axis)) / 2
    direct = stats.bootstrap([np.array(A.gain.replicates), np.array(B.gain.replicates)], mean_gain,
                             n_resamples=10_000, vectorized=True, method='percentile',
                             rng=np.random.default_rng(0)).confidence_interval
    assert seg.gain_ci == pytest.approx((direct.low, direct.high))
    overall = by[('about the change', 'all tasks')]
    assert overall.rows == 3 and overall.gain_ci[0] < overall.mean_gain < overall.gain_ci[1]
    # the one-pair row is not part of the verdict about CB: a family of its own
    conditional = by[('conditional', 'segmentation')]
    assert conditional.rows == 1 and conditional.mean_gain == pytest.approx(ONE_PAIR.gain.delta)


def test_probability_of_improvement_is_the_mean_mann_whitney_fraction_over_pairs():
    by = {(v.family, v.task): v for v in verdicts(ROWS)}
    expected = np.mean([stats.mannwhitneyu(r.gain.treatment_level, r.gain.control_level).statistic / 9
                        for r in (A, B)])
    assert by[('about the change', 'segmentation')].improvement == pytest.approx(expected)
    # by hand for the detection row's pair means: plain 3.05, 3.25; +CB 3.35, 3.4
    assert by[('about the change', 'detection')].improvement == 1.0


def test_each_arm_has_its_own_verdict_and_holm_family():
    """Gains of different changes are never averaged, nor corrected together."""
    reg = row(values({0: [42.1, 42.9], 1: [42.4, 42.0]}),
              values({0: [40.6, 41.1], 1: [41.0, 40.2]}), arm='+reg4')
    found = verdicts(ROWS + [reg])
    assert {v.arm for v in found} == {'+CB(mlp)', '+reg4'}
    (only,) = [v for v in found if v.arm == '+reg4']
    assert only.rows == 1 and only.mean_gain == pytest.approx(reg.gain.delta) and only.tested == 1
    cb_segmentation = [v for v in found if v.arm == '+CB(mlp)' and v.task == 'segmentation'
                       and v.family == 'about the change']
    assert cb_segmentation[0].rows == 2   # A and B, not the register row


def test_holm_flags_equal_a_hand_computation():
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert A.gain.p_value == pytest.approx(stats.ttest_1samp(A.gain.replicates, 0).pvalue)
    adjusted = holm([A.gain.p_value, B.gain.p_value, C.gain.p_value])
    expected = [r.model for r, p in zip((A, B, C), adjusted) if p < 0.05]
    surviving = [s.split(' ')[0] for v in verdicts(ROWS) if v.family == 'about the change'
                 and v.task != 'all tasks' for s in v.surviving]
    assert surviving == [m.split(' ')[0] for m in expected]


# ---- power and design -------------------------------------------------------------------------

def test_power_equals_the_noncentral_t_and_a_simulation():
    sd, n, gain_ = 0.7, 5, 0.9
    critical = stats.t.ppf(0.975, n - 1)
    nc = gain_ * np.sqrt(n) / sd
    direct = stats.nct.sf(critical, n - 1, nc) + stats.nct.cdf(-critical, n - 1, nc)
    assert power(gain_, sd, n) == pytest.approx(direct)
    rng = np.random.default_rng(0)
    diffs = rng.normal(gain_, sd, size=(200_000, n))
    simulated = np.mean(stats.ttest_1samp(diffs, 0.0, axis=1).pvalue < 0.05)
    assert power(gain_, sd, n) == pytest.approx(simulated, abs=0.005)
    # where scipy's noncentral t gives NaN (1 degree of freedom, noncentrality 80)
    assert np.isnan(stats.nct.cdf(-stats.t.ppf(0.975, 1), 1, 80.0))
    assert power(80 * 0.01 / np.sqrt(2), 0.01, 2) == pytest.approx(1.0, abs=1e-9)


def test_a_design_of_pairs_and_seeds_has_the_power_of_a_simulation_of_it():
    c = Components(pairs=0.3 ** 2, seeds=0.6 ** 2)
    rng = np.random.default_rng(1)
    arms = simulate_suites(rng, 20_000, 4, 3, 0.6, 0.3, 0.6)
    pair_means = (arms[:, 1] - arms[:, 0]).mean(-1)
    simulated = np.mean(stats.ttest_1samp(pair_means, 0.0, axis=1).pvalue < 0.05)
    assert design_power(0.6, c, 4, 3) == pytest.approx(simulated, abs=0.01)
    detectable = minimum_detectable_gain(c, 4, 3)
    assert design_power(detectable, c, 4, 3) == pytest.approx(0.8, abs=1e-6)


def test_the_cheapest_design_is_the_cheapest_of_all_that_reach_the_power():
    c = Components(pairs=0.2 ** 2, seeds=0.7 ** 2)
    best = cheapest_design(0.5, c, cost_pair=50.0, cost_seed=10.0)
    feasible = [(r * 50 + r * s * 10, r, s) for r in range(2, 101) for s in range(1, 21)
                if design_power(0.5, c, r, s) >= 0.8]
    assert (best.cost, best.pairs, best.seeds) == min(feasible)
    # when pretraining is cheap, more pairs of one seed; when it is dear, more seeds a pair
    assert cheapest_design(0.5, c, cost_pair=0.1, cost_seed=10.0).seeds == 1
    assert cheapest_design(0.5, c, cost_pair=1000.0, cost_seed=1.0).seeds > 3


def test_row_design_reads_the_rows_variance_and_costs():
    costed = row(values(PLAIN_RS), values(CB_RS), costs=dict(pair=7200.0, seed=360.0))
    design = row_design(costed, target_gain=0.5)
    assert (design.pairs, design.seeds) == (2, 2)
    assert design.detectable == pytest.approx(
        minimum_detectable_gain(costed.gain.components, 2, 2))
    assert design.cheapest == cheapest_design(0.5, costed.gain.components, 7200.0,
                                              360.0)
    one = row_design(ONE_PAIR, 0.5)
    assert one.level == 'conditional' and one.cheapest is None


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    return struct.unpack('>II', data[16:24])


def test_the_suite_report_holds_every_section_and_real_figures(local_suite):
    work_dir = local_suite.work_dir
    report = (work_dir / 'report.md').read_text()
    for section in ('## Protocol and weights', '## Results per row', '## Verdict across the matrix',
                    '## Design: where the noise is', '## Figures', '## Attention',
                    '## Software and machine'):
        assert section in report, section
    verdict = '| two-stage | +CB(mlp) | about the change | clean |'
    assert f'{verdict} segmentation | 1 (1 with intervals) |' in report
    assert f'{verdict} all tasks | 3 (3 with intervals) |' in report
    assert 'cheapest design for +0.50' in report and 'mmpretrain 1.2.0' in report
    assert 'MMEngine' not in report and 'mmengine 0.10.7' in report  # collect_env's, renamed
    assert '![gains](gains.png) ([PDF](gains.pdf))' in report
    # a row per gain (the clean rows and the two robustness rows), a panel per experiment
    gains = sum(r['gain']['delta'] is not None
                for r in json.loads((work_dir / 'results.json').read_text()))
    assert gains == 6
    for name, rows in (('gains', gains), ('curves', 3)):
        width, height = png_size(work_dir / f'{name}.png')
        assert width == 7 * 200  # page width
        assert height == round((1.0 + 0.42 * rows if name == 'gains' else 2.1 * rows) * 200)
        assert (work_dir / f'{name}.pdf').read_bytes()[:5] == b'%PDF-'
    # both arms are visible in the curves: the plain grey and the +CB red are both drawn
    from PIL import Image
    pixels = np.asarray(Image.open(work_dir / 'curves.png').convert('RGB')).reshape(-1, 3)
    red = np.sum((pixels[:, 0] > 180) & (pixels[:, 1] < 80) & (pixels[:, 2] < 80))
    grey = np.sum((abs(pixels[:, 0].astype(int) - 127) < 6) & (pixels[:, 0] == pixels[:, 1])
                  & (pixels[:, 1] == pixels[:, 2]))
    assert red > 500 and grey > 500


def test_replicates_that_do_not_vary_give_no_interval_and_no_p_value():
    """mmdet logs AP to three decimals: equal differences (up to their last bits) are no
    evidence of certainty."""
    g = gain(values({0: [0.3, 0.6], 1: [0.2, 0.4]}),
             values({0: [0.4, 0.7], 1: [0.30000000000000004, 0.5]}))
    assert g.delta == pytest.approx(0.1) and g.ci_low is None and g.p_value is None
    assert 'do not vary' in g.method
