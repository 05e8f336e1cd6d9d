"""The pipeline at CPU size through the command-line tools: tools/train.py and tools/test.py, the
train scripts that ship inside mmseg and mmdet, a killed run resumed exactly, a truncated newest
checkpoint passed over, and two gloo processes under torchrun.

(The suite's own runs, in test_suite.py and test_slurm.py, train, validate and test every task
in-process and in Slurm jobs; this file covers the tools a user runs by hand.)
"""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from smoke_helpers import (DET, REPO, SEG, SITE, command, metrics_of_test, run, run_killed_after,
                           scalars, schedule)

TRAIN, TEST = REPO / 'tools' / 'train.py', REPO / 'tools' / 'test.py'
MMSEG_TRAIN = SITE / 'mmseg' / '.mim' / 'tools' / 'train.py'
MMDET_TRAIN = SITE / 'mmdet' / '.mim' / 'tools' / 'train.py'
SEG_ITERS, SEG_EVERY = 60, 30
DET_ITERS, DET_EVERY = 60, 30


@pytest.fixture(scope='module')
def cwd(smoke_cwd):
    return smoke_cwd


@pytest.fixture(scope='module')
def untrained(cwd) -> dict:
    """Both configs' freshly initialised models, evaluated by the same Runner, in one process."""
    proc = run([sys.executable, '-c', (
        'import json\n'
        'from cb_transfer.launch import load_config, build_runner\n'
        f'for name, config in (("seg", {str(SEG)!r}), ("det", {str(DET)!r})):\n'
        '    cfg = load_config(config, work_dir="untrained_" + name)\n'
        '    print("METRICS", name, json.dumps(build_runner(cfg).test(), default=float))\n')],
        cwd=cwd)
    return {line.split()[1]: json.loads(line.split(' ', 2)[2])
            for line in proc.stdout.splitlines() if line.startswith('METRICS')}


@pytest.fixture(scope='module')
def seg_run(cwd):
    work_dir = cwd / 'seg'
    run(command(TRAIN, SEG, work_dir, cfg_options=schedule(SEG_ITERS, SEG_EVERY)), cwd)
    return work_dir


@pytest.fixture(scope='module')
def det_run(cwd):
    """Trained by the train script that ships inside mmdet, which runs our config unchanged."""
    work_dir = cwd / 'det'
    run(command(MMDET_TRAIN, DET, work_dir, cfg_options=schedule(DET_ITERS, DET_EVERY)), cwd)
    return work_dir


def test_seg_trains_evaluates_and_beats_an_untrained_model(seg_run, untrained):
    evals = scalars(seg_run)
    assert sorted(evals) == [SEG_EVERY, SEG_ITERS]
    assert (seg_run / f'iter_{SEG_ITERS}.pth').exists()
    trained = evals[SEG_ITERS]['mIoU']
    assert trained > untrained['seg']['mIoU'] + 20, (trained, untrained['seg'])


def test_det_trains_with_mmdet_own_script_and_beats_an_untrained_model(det_run, untrained):
    evals = scalars(det_run)
    assert sorted(evals) == [DET_EVERY, DET_ITERS]
    trained = evals[DET_ITERS]
    # 60 iterations from scratch: mmdet writes fractions; at least half an AP point above the
    # untrained model (about 0), and five times its AP
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert trained[key] > untrained['det'][key] + 0.005, (key, trained, untrained['det'])
        assert trained[key] > 5 * untrained['det'][key], (key, trained, untrained['det'])


def test_test_tool_reproduces_the_last_evaluation(seg_run, cwd):
    """tools/test.py on the last checkpoint; the suite's in-process test step is checked for
    every task below."""
    work_dir = cwd / 'seg_test'
    run([sys.executable, str(TEST), str(SEG), str(seg_run / f'iter_{SEG_ITERS}.pth'),
         '--work-dir', str(work_dir)], cwd)
    tested, validated = metrics_of_test(work_dir), scalars(seg_run)[SEG_ITERS]
    for key in ('mIoU', 'aAcc'):
        assert tested[key] == pytest.approx(validated[key]), key


def state_dict(path):
    return torch.load(path, map_location='cpu')['state_dict']


def assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_killed_run_resumed_with_mmseg_own_script_equals_uninterrupted(seg_run, cwd):
    """Killed after its first checkpoint, resumed by mmseg's shipped train script: the same
    weights and mIoU at the end as the uninterrupted run through tools/train.py."""
    work_dir = cwd / 'seg_killed'
    cmd = command(MMSEG_TRAIN, SEG, work_dir, cfg_options=schedule(SEG_ITERS, SEG_EVERY))
    run_killed_after(cmd, cwd, work_dir, f'iter_{SEG_EVERY}.pth')
    assert not (work_dir / f'iter_{SEG_ITERS}.pth').exists()
    run(command(MMSEG_TRAIN, SEG, work_dir, '--resume',
                cfg_options=schedule(SEG_ITERS, SEG_EVERY)), cwd)
    assert_same_weights(state_dict(work_dir / f'iter_{SEG_ITERS}.pth'),
                        state_dict(seg_run / f'iter_{SEG_ITERS}.pth'))
    assert scalars(work_dir)[SEG_ITERS]['mIoU'] == scalars(seg_run)[SEG_ITERS]['mIoU']


def test_a_truncated_newest_checkpoint_is_passed_over_and_the_resume_is_still_exact(seg_run, cwd):
    """As a run killed while saving (or a full disk) leaves it: tools/train.py --resume says which
    file it skipped and why, resumes from the newest readable checkpoint, and ends with the
    uninterrupted run's weights."""
    work_dir = cwd / 'seg_truncated'
    shutil.copytree(seg_run, work_dir)
    newest = work_dir / f'iter_{SEG_ITERS}.pth'
    newest.write_bytes(newest.read_bytes()[:100_000])
    proc = run(command(TRAIN, SEG, work_dir, '--resume',
                       cfg_options=schedule(SEG_ITERS, SEG_EVERY)), cwd)
    log = proc.stdout + proc.stderr
    assert f'resume: skipped {newest}: not a complete torch checkpoint' in log
    assert f'resume: from {work_dir / f"iter_{SEG_EVERY}.pth"}' in log
    assert f'resumed epoch: 0, iter: {SEG_EVERY}' in log
    assert_same_weights(state_dict(newest), state_dict(seg_run / f'iter_{SEG_ITERS}.pth'))


def test_two_gloo_processes_train_to_the_end(cwd):
    work_dir = cwd / 'seg_gloo'
    env = {**os.environ, 'GPUS': '2', 'PORT': '29517', 'PYTHON': sys.executable,
           'OMP_NUM_THREADS': '1'}
    cmd = ['bash', str(REPO / 'tools' / 'dist_train.sh'), str(SEG), '--work-dir', str(work_dir),
           '--cfg-options', *schedule(30, 30)]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-6000:]
    log = proc.stdout + proc.stderr
    assert 'CPU distributed run (pytorch): gloo backend, rank 0 of 2' in log
    assert (work_dir / 'iter_30.pth').exists()
    assert 'mIoU' in scalars(work_dir)[30]


def test_the_suite_tested_the_checkpoint_each_run_ended_with(local_suite):
    """The suite's own test step (in-process) reproduces each run's last validation."""
    for done in local_suite.work_dir.glob('*/*/seed*/suite_done.json'):
        record = json.loads(done.read_text())
        last = scalars(done.parent)
        validated = last[max(last)]
        for key, value in record['metrics'].items():
            if key in validated and isinstance(validated[key], float):
                assert value == pytest.approx(validated[key]), (done.parent, key)
