"""The whole pipeline at CPU size on generated data: train, evaluate, checkpoint, resume, test.

Runs the smoke configs through tools/train.py and tools/test.py, through the train scripts that
ship inside mmseg and mmdet, and under torchrun with two gloo processes.
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

from cb_transfer.data import make_smoke_data

TRAIN, TEST = REPO / 'tools' / 'train.py', REPO / 'tools' / 'test.py'
MMSEG_TRAIN = SITE / 'mmseg' / '.mim' / 'tools' / 'train.py'
MMDET_TRAIN = SITE / 'mmdet' / '.mim' / 'tools' / 'train.py'
SEG_ITERS, DET_ITERS = 90, 120


@pytest.fixture(scope='module')
def cwd(tmp_path_factory):
    """A working directory holding the generated data where the smoke configs look for it."""
    root = tmp_path_factory.mktemp('smoke')
    make_smoke_data(root / 'data' / 'smoke')
    return root


def untrained_metrics(config, cwd) -> dict:
    """The metric of the freshly initialised model, evaluated by the same Runner."""
    proc = run([sys.executable, '-c', (
        'import json, sys\n'
        'from cb_transfer.launch import load_config, build_runner\n'
        f'cfg = load_config({str(config)!r}, work_dir="untrained")\n'
        'print("METRICS", json.dumps(build_runner(cfg).test(), default=float))\n')], cwd=cwd)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith('METRICS'))
    return json.loads(line[len('METRICS '):])


@pytest.fixture(scope='module')
def seg_run(cwd):
    work_dir = cwd / 'seg'
    run(command(TRAIN, SEG, work_dir, cfg_options=schedule(SEG_ITERS, 45)), cwd)
    return work_dir


@pytest.fixture(scope='module')
def det_run(cwd):
    work_dir = cwd / 'det'
    run(command(TRAIN, DET, work_dir, cfg_options=schedule(DET_ITERS, 60)), cwd)
    return work_dir


def test_seg_trains_evaluates_and_beats_an_untrained_model(seg_run, cwd):
    evals = scalars(seg_run)
    assert sorted(evals) == [45, SEG_ITERS]
    assert (seg_run / f'iter_{SEG_ITERS}.pth').exists()
    trained = evals[SEG_ITERS]['mIoU']
    untrained = untrained_metrics(SEG, cwd)['mIoU']
    assert trained > untrained + 20, (trained, untrained)


def test_det_trains_evaluates_and_beats_an_untrained_model(det_run, cwd):
    evals = scalars(det_run)
    assert sorted(evals) == [60, DET_ITERS]
    trained = evals[DET_ITERS]
    untrained = untrained_metrics(DET, cwd)
    # mmdet writes fractions: at least 1.5 AP points, and five times the untrained model's
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert trained[key] > untrained[key] + 0.015, (key, trained, untrained)
        assert trained[key] > 5 * untrained[key], (key, trained, untrained)


@pytest.mark.parametrize('task', ['seg', 'det'])
def test_resume_continues_from_the_last_checkpoint(task, seg_run, det_run, cwd):
    config, done, iters, every = ((SEG, seg_run, SEG_ITERS, 45) if task == 'seg' else
                                  (DET, det_run, DET_ITERS, 60))
    work_dir = cwd / f'{task}_resumed'
    shutil.copytree(done, work_dir)
    proc = run(command(TRAIN, config, work_dir, '--resume',
                       cfg_options=schedule(iters + 20, every) + ['train_cfg.val_interval=20']),
               cwd)
    assert f'resumed epoch: 0, iter: {iters}' in proc.stdout + proc.stderr
    assert sorted(scalars(work_dir))[-1] == iters + 20
    assert (work_dir / f'iter_{iters + 20}.pth').exists()


@pytest.mark.parametrize('task', ['seg', 'det'])
def test_test_tool_reproduces_the_last_evaluation(task, seg_run, det_run, cwd):
    config, done, iters = (SEG, seg_run, SEG_ITERS) if task == 'seg' else (DET, det_run, DET_ITERS)
    work_dir = cwd / f'{task}_test'
    run([sys.executable, str(TEST), str(config), str(done / f'iter_{iters}.pth'),
         '--work-dir', str(work_dir)], cwd)
    tested, validated = metrics_of_test(work_dir), scalars(done)[iters]
    keys = ['mIoU', 'aAcc'] if task == 'seg' else ['coco/bbox_mAP', 'coco/segm_mAP']
    for key in keys:
        assert tested[key] == pytest.approx(validated[key]), key


def test_killed_run_resumed_with_mmseg_own_script_equals_uninterrupted(seg_run, cwd):
    """Killed after its iteration-45 checkpoint, resumed by mmseg's shipped train script: the same
    weights and mIoU at iteration 90 as the uninterrupted run through tools/train.py."""
    work_dir = cwd / 'seg_killed'
    cmd = command(MMSEG_TRAIN, SEG, work_dir, cfg_options=schedule(SEG_ITERS, 45))
    run_killed_after(cmd, cwd, work_dir, 'iter_45.pth')
    assert not (work_dir / f'iter_{SEG_ITERS}.pth').exists()
    run(command(MMSEG_TRAIN, SEG, work_dir, '--resume', cfg_options=schedule(SEG_ITERS, 45)), cwd)

    resumed = torch.load(work_dir / f'iter_{SEG_ITERS}.pth')['state_dict']
    uninterrupted = torch.load(seg_run / f'iter_{SEG_ITERS}.pth')['state_dict']
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        assert torch.equal(resumed[key], uninterrupted[key]), key
    assert scalars(work_dir)[SEG_ITERS]['mIoU'] == scalars(seg_run)[SEG_ITERS]['mIoU']


def test_mmdet_own_train_script_runs_the_det_config(cwd):
    work_dir = cwd / 'det_mmdet_script'
    run(command(MMDET_TRAIN, DET, work_dir, cfg_options=schedule(20, 20)), cwd)
    assert 'coco/segm_mAP' in scalars(work_dir)[20]
    assert (work_dir / 'iter_20.pth').exists()


def test_two_gloo_processes_train_to_the_end(cwd):
    work_dir = cwd / 'seg_gloo'
    env = {**os.environ, 'GPUS': '2', 'PORT': '29517', 'PYTHON': sys.executable,
           'OMP_NUM_THREADS': '1'}
    cmd = ['bash', str(REPO / 'tools' / 'dist_train.sh'), str(SEG), '--work-dir', str(work_dir),
           '--cfg-options', *schedule(30, 30)]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-6000:]
    log = proc.stdout + proc.stderr
    assert 'CPU distributed run: gloo backend, rank 0 of 2' in log
    assert (work_dir / 'iter_30.pth').exists()
    assert 'mIoU' in scalars(work_dir)[30]
