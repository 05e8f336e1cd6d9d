"""The pipeline at CPU size through the command-line tools: tools/train.py and tools/test.py, the
train scripts that ship inside mmseg and mmdet, a killed run resumed exactly, a truncated newest
checkpoint passed over. (Several processes: test_distributed.py and test_slurm.py.)

(The suite's own runs, in test_suite.py and test_slurm.py, train, validate and test every task
in-process and in Slurm jobs; this file covers the tools a user runs by hand.)
"""
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import helpers
import pytest
from helpers import (REPO, SITE, assert_same_weights, command, evaluations, finish, kill_after,
                     recorded_runs, schedule, side_by_side, state_dict)

from cb_transfer.run_dir import RunDir

SEG, DET = REPO / helpers.SEG[0], REPO / helpers.DET[0]
TRAIN, TEST = REPO / 'tools' / 'train.py', REPO / 'tools' / 'test.py'
MMSEG_TRAIN = SITE / 'mmseg' / '.mim' / 'tools' / 'train.py'
MMDET_TRAIN = SITE / 'mmdet' / '.mim' / 'tools' / 'train.py'
SEG_ITERS, SEG_EVERY = 60, 30
DET_ITERS, DET_EVERY = 60, 30
SEG_SCHEDULE = schedule(SEG_ITERS, SEG_EVERY)
UNTRAINED = [sys.executable, '-c', (
    'import json\n'
    'from cb_transfer.launch import load_config, build_runner\n'
    f'for name, config in (("seg", {str(SEG)!r}), ("det", {str(DET)!r})):\n'
    '    cfg = load_config(config, work_dir="untrained_" + name)\n'
    '    print("METRICS", name, json.dumps(build_runner(cfg).test(), default=float))\n')]


@pytest.fixture(scope='module')
def runs(smoke_cwd) -> SimpleNamespace:
    """Every run the tests below check, side by side (one thread each, so that both cores
    work), each started as soon as what it needs is there:

    - both configs' freshly initialised models, evaluated by the same Runner (one process);
    - ``seg``: the segmentation config trained by tools/train.py;
    - ``det``: the detection config trained by the train script that ships inside mmdet, which
      runs our config unchanged;
    - ``killed``: the segmentation config trained by the train script that ships inside mmseg,
      killed (SIGKILL) after its first checkpoint, then resumed by the same script;
    - ``truncated``: a copy of ``seg`` whose last checkpoint is cut short, as a run killed while
      saving (or a full disk) leaves it, resumed by tools/train.py;
    - ``tested``: tools/test.py on ``seg``'s last checkpoint.
    """
    cwd = smoke_cwd
    out = SimpleNamespace(**{name: cwd / f'tools_{name}' for name in (
        'seg', 'det', 'killed', 'truncated', 'tested')})
    with side_by_side(cwd) as start:
        untrained = start(UNTRAINED)
        seg = start(command(TRAIN, SEG, out.seg, cfg_options=SEG_SCHEDULE))
        det = start(command(MMDET_TRAIN, DET, out.det, cfg_options=schedule(DET_ITERS, DET_EVERY)))
        killed = start(command(MMSEG_TRAIN, SEG, out.killed, cfg_options=SEG_SCHEDULE))
        kill_after(killed, out.killed, f'iter_{SEG_EVERY}.pth')
        out.left_by_the_kill = sorted(p.name for p in out.killed.glob('iter_*.pth'))
        resumed = start(command(MMSEG_TRAIN, SEG, out.killed, '--resume', cfg_options=SEG_SCHEDULE))

        finish(seg)
        shutil.copytree(out.seg, out.truncated)
        out.cut = out.truncated / f'iter_{SEG_ITERS}.pth'
        out.cut.write_bytes(out.cut.read_bytes()[:100_000])
        truncated = start(command(TRAIN, SEG, out.truncated, '--resume', cfg_options=SEG_SCHEDULE))
        tested = start([sys.executable, str(TEST), str(SEG), str(out.seg / f'iter_{SEG_ITERS}.pth'),
                        '--work-dir', str(out.tested)])

        out.untrained = {line.split()[1]: json.loads(line.split(' ', 2)[2])
                         for line in finish(untrained).stdout.splitlines()
                         if line.startswith('METRICS')}
        finish(det), finish(resumed), finish(tested)
        resumed_truncated = finish(truncated)
        out.truncated_log = resumed_truncated.stdout + resumed_truncated.stderr
    return out


def test_seg_trains_evaluates_and_beats_an_untrained_model(runs):
    evals = evaluations(runs.seg)
    assert sorted(evals) == [SEG_EVERY, SEG_ITERS]
    assert (runs.seg / f'iter_{SEG_ITERS}.pth').exists()
    trained = evals[SEG_ITERS]['mIoU']
    assert trained > runs.untrained['seg']['mIoU'] + 20, (trained, runs.untrained['seg'])


def test_det_trains_with_mmdet_own_script_and_beats_an_untrained_model(runs):
    evals = evaluations(runs.det)
    assert sorted(evals) == [DET_EVERY, DET_ITERS]
    trained, untrained = evals[DET_ITERS], runs.untrained['det']
    # 60 iterations from scratch: mmdet writes fractions; at least half an AP point above the
    # untrained model (about 0), and five times its AP
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert trained[key] > untrained[key] + 0.005, (key, trained, untrained)
        assert trained[key] > 5 * untrained[key], (key, trained, untrained)


def test_test_tool_reproduces_the_last_evaluation(runs):
    """tools/test.py on the last checkpoint; the suite's in-process test step is checked for
    every task below."""
    tested, validated = RunDir(runs.tested).test_metrics(), evaluations(runs.seg)[SEG_ITERS]
    for key in ('mIoU', 'aAcc'):
        assert tested[key] == pytest.approx(validated[key]), key


def test_killed_run_resumed_with_mmseg_own_script_equals_uninterrupted(runs):
    """Killed after its first checkpoint, resumed by mmseg's shipped train script: the same
    weights and mIoU at the end as the uninterrupted run through tools/train.py."""
    assert runs.left_by_the_kill == [f'iter_{SEG_EVERY}.pth']
    assert_same_weights(state_dict(runs.killed / f'iter_{SEG_ITERS}.pth'),
                        state_dict(runs.seg / f'iter_{SEG_ITERS}.pth'))
    assert evaluations(runs.killed)[SEG_ITERS]['mIoU'] == evaluations(runs.seg)[SEG_ITERS]['mIoU']


def test_a_truncated_newest_checkpoint_is_passed_over_and_the_resume_is_still_exact(runs):
    """tools/train.py --resume says which file it skipped and why, resumes from the newest
    readable checkpoint, and ends with the uninterrupted run's weights."""
    assert f'resume: skipped {runs.cut}: not a complete torch checkpoint' in runs.truncated_log
    assert f'resume: from {runs.truncated / f"iter_{SEG_EVERY}.pth"}' in runs.truncated_log
    assert f'resumed epoch: 0, iter: {SEG_EVERY}' in runs.truncated_log
    assert_same_weights(state_dict(runs.cut), state_dict(runs.seg / f'iter_{SEG_ITERS}.pth'))


def test_the_suite_tested_the_checkpoint_each_run_ended_with(local_suite):
    """The suite's own test step (in-process) tested the checkpoint each run ended with, and
    reproduces its last validation."""
    recorded = recorded_runs(local_suite.work_dir)
    assert len(recorded) == 12
    for run_dir in recorded:
        record = run_dir.record
        assert Path(record.final_checkpoint) == run_dir.last_checkpoint()
        last = evaluations(run_dir.path)
        validated = last[max(last)]
        for key, value in record.metrics.items():
            if key in validated and isinstance(validated[key], float):
                assert value == pytest.approx(validated[key]), (run_dir, key)
