"""The report: the verdict across the matrix and the power figures against direct computations,
and a real suite's report with every section and real figures."""
import struct
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from cb_transfer.results.verdict import (holm, minimum_detectable_gain, power, row_p_value,
                                         row_power, seeds_needed, verdicts)

PLAIN_A, CB_A = [42.1, 42.9, 42.4], [42.6, 43.1, 43.0]
PLAIN_B, CB_B = [40.0, 40.3, 40.1], [40.1, 40.0, 40.4]
PLAIN_C, CB_C = [3.1, 3.0], [3.3, 3.4]


def row(plain, cb, task='segmentation', protocol='two-stage', metric='mIoU', model='UPerNet',
        seeds=None):
    seeds = seeds or list(range(len(plain)))
    return SimpleNamespace(task=task, protocol=protocol, metric=metric, model=model,
                           arch='deit_small_patch16_224', schedule='160k', cb_options='mlp',
                           plain_values=list(zip(seeds, plain)), cb_values=list(zip(seeds, cb)))


ROWS = [row(PLAIN_A, CB_A), row(PLAIN_B, CB_B, model='Semantic FPN'),
        row(PLAIN_C, CB_C, task='detection', metric='coco/bbox_mAP', model='MaskRCNN')]


def test_mean_gain_and_its_stratified_bootstrap_equal_scipy_on_the_same_samples():
    by_task = {v.task: v for v in verdicts(ROWS)}
    seg = by_task['segmentation']
    assert seg.rows == 2 and seg.mean_gain == pytest.approx(
        np.mean([np.mean(CB_A) - np.mean(PLAIN_A), np.mean(CB_B) - np.mean(PLAIN_B)]))

    def mean_gain(pa, ca, pb, cb, axis=-1):
        return (ca.mean(axis) - pa.mean(axis) + cb.mean(axis) - pb.mean(axis)) / 2
    direct = stats.bootstrap([np.array(v) for v in (PLAIN_A, CB_A, PLAIN_B, CB_B)], mean_gain,
                             n_resamples=10_000, vectorized=True, method='percentile',
                             rng=np.random.default_rng(0)).confidence_interval
    assert seg.gain_ci == pytest.approx((direct.low, direct.high))
    overall = by_task['all tasks']
    assert overall.rows == 3 and overall.gain_ci[0] < overall.mean_gain < overall.gain_ci[1]


def test_probability_of_improvement_is_the_mean_mann_whitney_fraction():
    by_task = {v.task: v for v in verdicts(ROWS)}
    expected = np.mean([stats.mannwhitneyu(c, p).statistic / (len(c) * len(p))
                        for p, c in ((PLAIN_A, CB_A), (PLAIN_B, CB_B))])
    assert by_task['segmentation'].improvement == pytest.approx(expected)
    # by hand for the detection row: all four pairs have +CB above plain
    assert by_task['detection'].improvement == 1.0


def test_holm_flags_equal_a_hand_computation():
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    p_values = [row_p_value(r) for r in ROWS]
    assert p_values[0] == pytest.approx(stats.ttest_rel(CB_A, PLAIN_A).pvalue)
    surviving = {v.task: v.surviving for v in verdicts(ROWS)}
    adjusted = holm(p_values)
    expected = [r.model for r, p in zip(ROWS, adjusted) if p < 0.05]
    flagged = [s.split(' ')[0] for task in ('segmentation', 'detection') for s in surviving[task]]
    assert flagged == [m.split(' ')[0] for m in expected]


def test_power_equals_the_noncentral_t_and_a_simulation():
    sd, n, gain = 0.7, 5, 0.9
    critical = stats.t.ppf(0.975, n - 1)
    nc = gain * np.sqrt(n) / sd
    direct = stats.nct.sf(critical, n - 1, nc) + stats.nct.cdf(-critical, n - 1, nc)
    assert power(gain, sd, n) == pytest.approx(direct)
    rng = np.random.default_rng(0)
    diffs = rng.normal(gain, sd, size=(200_000, n))
    simulated = np.mean(stats.ttest_1samp(diffs, 0.0, axis=1).pvalue < 0.05)
    assert power(gain, sd, n) == pytest.approx(simulated, abs=0.005)
    detectable = minimum_detectable_gain(sd, n)
    assert power(detectable, sd, n) == pytest.approx(0.8, abs=1e-6)
    needed = seeds_needed(0.5, sd)
    assert power(0.5, sd, needed) >= 0.8 > power(0.5, sd, needed - 1)
    # where scipy's noncentral t gives NaN (1 degree of freedom, noncentrality 80)
    assert np.isnan(stats.nct.cdf(-stats.t.ppf(0.975, 1), 1, 80.0))
    assert power(80 * 0.01 / np.sqrt(2), 0.01, 2) == pytest.approx(1.0, abs=1e-9)


def test_row_power_uses_the_paired_spread():
    figures = row_power(ROWS[0], target_gain=0.5)
    sd = np.std(np.subtract(CB_A, PLAIN_A), ddof=1)
    assert figures.paired and figures.n == 3 and figures.sd == pytest.approx(sd)
    assert figures.detectable == pytest.approx(minimum_detectable_gain(sd, 3))
    assert figures.seeds_for_target == seeds_needed(0.5, sd)
    unpaired = row_power(SimpleNamespace(**{**vars(ROWS[0]),
                                            'cb_values': list(zip([5, 6, 7], CB_A))}))
    pooled = np.sqrt((np.var(PLAIN_A, ddof=1) + np.var(CB_A, ddof=1)) / 2)
    assert not unpaired.paired and unpaired.sd == pytest.approx(pooled)
    assert unpaired.detectable == pytest.approx(minimum_detectable_gain(pooled, 3, paired=False))


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    return struct.unpack('>II', data[16:24])


def test_the_suite_report_holds_every_section_and_real_figures(local_suite):
    work_dir = local_suite.work_dir
    report = (work_dir / 'report.md').read_text()
    for section in ('## Protocol and weights', '## Results per row', '## Verdict across the matrix',
                    '## Seeds and power', '## Figures', '## Attention', '## Software and machine'):
        assert section in report, section
    assert '| two-stage | segmentation | 1 (1 with intervals) |' in report
    assert '| two-stage | all tasks | 3 (3 with intervals) |' in report
    assert 'seeds for a gain of 0.50' in report and 'mmpretrain 1.2.0' in report
    assert '![gains](gains.png) ([PDF](gains.pdf))' in report
    for name, rows in (('gains', 4), ('curves', 3)):
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
