"""Robustness to common corruptions: every corruption runs in this stack, both arms see the same
pixels, P/mPC/rPC as the literature (and mmdet's own aggregation) computes them, and the suite's
evaluation-only stage: recorded with each run, resumed after a kill, in the table and report."""
import importlib.util
import json
import re
import sysconfig
from pathlib import Path

import mmengine
import numpy as np
import pytest
from helpers import (SEG, copy_runs, kill_after_line, recorded_runs, reduced_suite, run, start,
                     suite_command)

from cb_transfer.robustness.corruptions import (BENCHMARK, FAMILIES, HELD_OUT, SEVERITIES,
                                                SeededCorrupt, corrupt)
from cb_transfer.robustness.evaluate import RESULTS, corrupted_pipeline, read_results
from cb_transfer.robustness.metrics import names, summarize
from cb_transfer.run_dir import RunDir

# an odd size, neither side a multiple of 8 or 14, as real images are
IMAGE = (np.random.default_rng(0).random((43, 61, 3)) * 255).astype(np.uint8)


def test_every_corruption_runs_at_every_severity_here_and_repeats_its_pixels_for_one_seed():
    """The 15 benchmark and 4 held-out corruptions at severities 1 to 5 (a dependency bump that
    breaks one fails here, not 22 evaluations into a run); glass_blur, gaussian_blur and fog
    needed the compatibility layer under numpy 2 and scikit-image 0.26, impulse_noise the
    generator seeded from numpy's (scikit-image's random_noise draws from one of its own)."""
    assert len(BENCHMARK) == 15 and len(HELD_OUT) == 4
    assert set(BENCHMARK) == {c for family in FAMILIES.values() for c in family}
    for name in BENCHMARK + HELD_OUT:
        previous = None
        for severity in SEVERITIES:
            out = np.asarray(corrupt(IMAGE, name, severity, seed=0))
            again = np.asarray(corrupt(IMAGE, name, severity, seed=0))
            assert np.array_equal(out, again), (name, severity)  # the same seed, the same pixels
            assert out.shape == IMAGE.shape, (name, severity, out.shape)
            assert not np.array_equal(out.astype(np.uint8), IMAGE), (name, severity)
            if previous is not None:  # the severity changes the result
                assert not np.array_equal(out, previous), (name, severity)
            previous = out


def test_both_arms_and_a_rerun_see_the_same_corrupted_pixels():
    def transformed(path, corruption='shot_noise', severity=3):
        return SeededCorrupt(corruption, severity).transform(
            dict(img=IMAGE.copy(), img_path=path))['img']
    first, second = transformed('data/val/0001.jpg'), transformed('other/root/0001.jpg')
    assert np.array_equal(first, second)   # the same file, wherever the data set lies
    assert not np.array_equal(first, transformed('data/val/0002.jpg'))
    assert not np.array_equal(first, transformed('data/val/0001.jpg', severity=4))
    np.random.seed(5)
    before = np.random.get_state()[1].copy()
    transformed('data/val/0001.jpg')
    assert np.array_equal(np.random.get_state()[1], before)  # the global state is left alone
    with pytest.raises(ValueError, match="corruption='rain' is not one of"):
        SeededCorrupt('rain', 1)


def test_the_corruption_goes_right_after_loading_before_resizing():
    pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(64, 64)),
                dict(type='PackSegInputs')]
    corrupted = corrupted_pipeline(pipeline, 'fog', 2)
    assert [s['type'] for s in corrupted] == ['LoadImageFromFile', 'cb_transfer.SeededCorrupt',
                                              'Resize', 'PackSegInputs']
    assert corrupted_pipeline(pipeline, 'clean', 0) == pipeline and len(pipeline) == 3


def fixture_results(rng, corruptions, severities, clean=0.40):
    results = [dict(corruption='clean', severity=0, metrics={'coco/bbox_mAP': clean})]
    for c in corruptions:
        for s in severities:
            results.append(dict(corruption=c, severity=s, metrics={
                'coco/bbox_mAP': round(float(clean * (1 - 0.1 * s) + rng.normal(0, 0.01)), 3)}))
    return results


def test_mpc_and_rpc_equal_a_hand_computation_and_mmdet_own_aggregation(tmp_path, capsys):
    # by hand on three numbers: P 50, two corrupted evaluations 30 and 40
    hand = [dict(corruption='clean', severity=0, metrics={'mIoU': 50.0}),
            dict(corruption='fog', severity=1, metrics={'mIoU': 30.0}),
            dict(corruption='snow', severity=1, metrics={'mIoU': 40.0}),
            dict(corruption='spatter', severity=1, metrics={'mIoU': 0.0})]  # held out: not in it
    summary = summarize(hand, ['mIoU'])
    assert summary == {'mIoU': 50.0, 'mIoU/corrupted (2x1 subset)': 35.0,
                       'mIoU/relative (2x1 subset)': 0.7}
    assert names('mIoU', BENCHMARK, SEVERITIES) == ('mIoU/mPC', 'mIoU/rPC')

    # the benchmark's 15 x 5, against mmdet's tools/analysis_tools/robustness_eval.py
    results = fixture_results(np.random.default_rng(0), BENCHMARK, SEVERITIES)
    ours = summarize(results, ['coco/bbox_mAP'])
    eval_output = {c: {} for c in BENCHMARK}
    eval_output[BENCHMARK[0]][0] = results[0]['metrics']
    for r in results[1:]:
        eval_output[r['corruption']][r['severity']] = r['metrics']
    mmengine.dump(eval_output, str(tmp_path / 'results.pkl'))
    tool = (Path(sysconfig.get_paths()['purelib']) / 'mmdet' / '.mim' / 'tools' /
            'analysis_tools' / 'robustness_eval.py')
    spec = importlib.util.spec_from_file_location('robustness_eval', tool)
    robustness_eval = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(robustness_eval)
    capsys.readouterr()
    robustness_eval.get_coco_style_results(str(tmp_path / 'results.pkl'), 'bbox', 'mAP',
                                           prints='all')
    printed = capsys.readouterr().out  # mmdet prints its P, mPC (3 decimals) and rPC (percent)
    p, mpc = (float(v) for v in re.findall(r'mAP   =  ([\d.]+)', printed))
    rpc = float(re.search(r'mAP   => ([\d.]+) %', printed).group(1))
    assert ours['coco/bbox_mAP'] == pytest.approx(p, abs=5e-4)
    assert ours['coco/bbox_mAP/mPC'] == pytest.approx(mpc, abs=5e-4)
    assert ours['coco/bbox_mAP/rPC'] * 100 == pytest.approx(rpc, abs=0.05)


def test_the_suite_evaluated_both_arms_and_reports_them(local_suite):
    work_dir = local_suite.work_dir
    evaluated = recorded_runs(work_dir, robustness=True)
    assert len(evaluated) == 4 and {r.record.provenance.arm for r in evaluated} == {'plain', 'cb'}
    rows = {r['metric']: r for r in json.loads((work_dir / 'results.json').read_text())}
    for run_dir in evaluated:
        record, results = run_dir.record, read_results(run_dir.path)
        assert [(r['corruption'], r['severity']) for r in results] == [
            ('clean', 0), ('gaussian_noise', 3), ('fog', 3)]
        training = RunDir(run_dir.path.parent).record
        assert record.final_checkpoint == training.final_checkpoint
        assert record.provenance.stage == 'robustness'
        assert record.provenance.weights.upstream_run == training.name
        # the clean evaluation is the run's own test of that checkpoint
        assert results[0]['metrics']['mIoU'] == pytest.approx(training.metrics['mIoU'])
        mean = np.mean([r['metrics']['mIoU'] for r in results[1:]])
        assert record.metrics['mIoU/corrupted (2x1 subset)'] == pytest.approx(mean)
        column = 'control_values' if record.provenance.arm == 'plain' else 'treatment_values'
        assert [v for u, s, v in rows['mIoU/corrupted (2x1 subset)'][column]
                if u == record.provenance.pair] == pytest.approx([mean])
    relative = rows['mIoU/relative (2x1 subset)']
    assert relative['selection'] == 'final checkpoint' and relative['gain']['level'] == 'pairs'
    report = (work_dir / 'report.md').read_text()
    assert '## Robustness to common corruptions' in report
    assert 'a subset, so its means are labelled as such and never called mPC' in report
    assert '| two-stage | +CB(mlp) | about the change | robustness | segmentation |' in report
    assert (work_dir / 'robustness.png').read_bytes()[:4] == b'\x89PNG'
    assert len(json.loads((work_dir / 'robustness.json').read_text())) == 4


def test_a_killed_evaluation_resumes_without_repeating_finished_corruptions(local_suite,
                                                                            tmp_path):
    """The session suite's plain UPerNet run of pair 0 (copied, with what it started from)
    evaluated under 3 corruptions at 2 severities, killed after its third evaluation, then run
    again: each evaluation once, the first three as the killed run left them."""
    source = local_suite.work_dir
    work_dir = tmp_path / 'robust'
    trained = Path('two-stage') / Path(SEG[0]).stem / 'pair0' / 'seed0'
    copy_runs(source, work_dir, 'upstream', trained)
    suite = reduced_suite(tmp_path, 'robust', detection=False, extra=f'''
        upstream_seeds = [0]
        seeds = [0]
        downstream = [dict(plain={SEG[0]!r}, weights=dict(plain='vit_tiny.plain'))]
        robustness = dict(corruptions=['gaussian_noise', 'motion_blur', 'fog'],
                          severities=[2, 4])
        ''')
    cmd = suite_command(suite, work_dir, '--jobs', 1, '--threads', 1)
    results = work_dir / trained / 'robustness' / RESULTS
    kill_after_line(start(cmd, local_suite.cwd), results, 3)
    killed = read_results(results.parent)
    assert 3 <= len(killed) < 7
    out = run(cmd, local_suite.cwd).stdout
    assert f'{trained}/robustness: resuming after {len(killed)} of 7 evaluations' in out
    final = read_results(results.parent)
    keys = [(r['corruption'], r['severity']) for r in final]
    assert len(keys) == len(set(keys)) == 7 and final[:len(killed)] == killed
    assert RunDir(results.parent).done
