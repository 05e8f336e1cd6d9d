"""The main job: the suite runs its matrix, resumes after an interruption, and tabulates."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from smoke_helpers import REPO, scalars

SMOKE_SUITE = (REPO / 'configs' / 'suites' / 'smoke.py').read_text()
SEG_PAIR = ("('configs/smoke/upernet_vit-tiny-p8_1xb4-240iter_smoke-ade20k-64x64.py',\n"
            "     'configs/smoke/upernet_vit-tiny-p8-cb_1xb4-240iter_smoke-ade20k-64x64.py')")
SHORT = """
seeds = [0, 1]
_seg = {'train_cfg.max_iters': 30, 'train_cfg.val_interval': 30,
        'default_hooks.checkpoint.interval': 15, 'param_scheduler.1.end': 30}
_det = {'train_cfg.max_iters': 20, 'train_cfg.val_interval': 20,
        'default_hooks.checkpoint.interval': 20, 'param_scheduler.1.end': 20,
        'param_scheduler.1.milestones': [15]}
cfg_options = {pairs[0][0]: _seg, pairs[0][1]: _seg}
if len(pairs) > 1:
    cfg_options.update({pairs[1][0]: _det, pairs[1][1]: _det})
"""


def suite_file(tmp_path, seg_only=False) -> Path:
    """The default suite, reduced: 2 seeds, a few iterations (and optionally segmentation only)."""
    text = SMOKE_SUITE
    if seg_only:
        text = f'smoke_data = True\npairs = [\n    {SEG_PAIR},\n]\n'
    path = tmp_path / ('seg_suite.py' if seg_only else 'reduced_suite.py')
    path.write_text(text + SHORT)
    return path


def suite_command(suite, work_dir, *args):
    return [sys.executable, str(REPO / 'tools' / 'run_suite.py'), str(suite), '--work-dir',
            str(work_dir), *args]


def run(cmd, cwd):
    env = {**os.environ, 'PYTHONWARNINGS': 'ignore'}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


@pytest.fixture(scope='module')
def reduced(tmp_path_factory):
    cwd = tmp_path_factory.mktemp('suite')
    work_dir = cwd / 'work_dirs' / 'reduced'
    out = run(suite_command(suite_file(cwd), work_dir), cwd)
    return cwd, work_dir, out


def rows(work_dir):
    return json.loads((work_dir / 'results.json').read_text())


def test_reduced_default_suite_runs_end_to_end(reduced):
    cwd, work_dir, out = reduced
    assert 'suite' in out and '8 runs (4 configs x 2 seeds), 0 finished, 8 to run' in out
    assert '[1/8] upernet_vit-tiny-p8_1xb4-240iter_smoke-ade20k-64x64 seed 0: iter 30/30' in out
    assert '[8/8] mask-rcnn_vit-tiny-p8-cb_fpn_1xb4-240iter_smoke-coco-128x128 seed 1: done' in out
    assert 'suite left' in out and 'evaluated at iter 30, mIoU' in out
    table = rows(work_dir)
    assert {(r['task'], r['metric']) for r in table} == {
        ('segmentation', 'mIoU'), ('detection', 'coco/bbox_mAP'), ('detection', 'coco/segm_mAP')}
    for row in table:
        assert row['plain_n'] == row['cb_n'] == 2, row
        assert row['delta'] is not None and row['ci_low'] is not None
    assert (work_dir / 'results.md').read_text() in out
    assert (work_dir / 'gains.png').read_bytes()[:4] == b'\x89PNG'
    assert (cwd / 'data' / 'smoke' / 'ade20k' / '.complete').exists()


def test_table_equals_the_numbers_computed_by_hand_from_the_logs(reduced):
    """cb_transfer.results on real training runs: the right runs in the right arms."""
    _, work_dir, _ = reduced
    by_hand = {}
    for config_dir in work_dir.iterdir():
        if not config_dir.is_dir():
            continue
        for seed_dir in config_dir.iterdir():
            evals = scalars(seed_dir)
            last = evals[max(evals)]
            arm = 'cb' if '-cb' in config_dir.name else 'plain'
            task = 'segmentation' if 'upernet' in config_dir.name else 'detection'
            for metric, scale in (('mIoU', 1), ('coco/bbox_mAP', 100), ('coco/segm_mAP', 100)):
                if metric in last:
                    by_hand.setdefault((task, metric, arm), {})[seed_dir.name] = \
                        last[metric] * scale
    for row in rows(work_dir):
        plain = by_hand[(row['task'], row['metric'], 'plain')]
        cb = by_hand[(row['task'], row['metric'], 'cb')]
        assert row['plain_mean'] == pytest.approx(np.mean(list(plain.values())))
        assert row['cb_std'] == pytest.approx(np.std(list(cb.values()), ddof=1))
        assert row['delta'] == pytest.approx(np.mean([cb[s] - plain[s] for s in plain]))


def test_interrupted_suite_resumes_to_the_same_table(reduced, tmp_path):
    """Killed during its third run (after that run's first checkpoint), the suite started again
    skips the two finished runs, resumes the third, and ends with the uninterrupted table."""
    _, uninterrupted, _ = reduced
    cwd = reduced[0]
    work_dir = tmp_path / 'interrupted'
    suite = suite_file(tmp_path, seg_only=True)
    env = {**os.environ, 'PYTHONWARNINGS': 'ignore'}
    proc = subprocess.Popen(suite_command(suite, work_dir), cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    third = work_dir / 'upernet_vit-tiny-p8-cb_1xb4-240iter_smoke-ade20k-64x64' / 'seed0'
    deadline = time.time() + 600
    try:
        while not (third / 'last_checkpoint').exists():
            assert proc.poll() is None, 'the suite ended before it could be interrupted'
            assert time.time() < deadline
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finished = sorted(work_dir.glob('upernet_vit-tiny-p8_1xb4*/seed*/suite_done.json'))
    assert len(finished) == 2 and not (third / 'suite_done.json').exists()
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    folders = {p: sorted(p.parent.glob('2*')) for p in finished}  # one for training, one for test

    out = run(suite_command(suite, work_dir), cwd)
    assert '4 runs (2 configs x 2 seeds), 2 finished, 2 to run' in out
    assert '[1/2] upernet_vit-tiny-p8-cb_1xb4-240iter_smoke-ade20k-64x64 seed 0: resuming' in out
    assert {p: p.stat().st_mtime_ns for p in finished} == stamps  # not trained again
    assert {p: sorted(p.parent.glob('2*')) for p in finished} == folders
    assert all(len(f) == 2 for f in folders.values())

    resumed = [r for r in rows(work_dir) if r['metric'] == 'mIoU']
    expected = [r for r in rows(uninterrupted) if r['metric'] == 'mIoU']
    assert resumed == expected


def test_dry_run_of_the_full_preset_lists_every_run_and_touches_nothing(tmp_path):
    before = set(tmp_path.rglob('*'))
    out = run([sys.executable, str(REPO / 'tools' / 'run_suite.py'),
               str(REPO / 'configs' / 'suites' / 'full.py'), '--dry-run', '--launcher', 'pytorch',
               '--gpus', '8'], tmp_path)
    assert set(tmp_path.rglob('*')) == before
    commands = [line for line in out.splitlines()
                if line.startswith('[new] ') and 'dist_train.sh' in line]
    assert sum('dist_test.sh' in line for line in out.splitlines()) == len(commands)
    full = (REPO / 'configs' / 'suites' / 'full.py').read_text()
    assert len(commands) == 14 * 2 * 3 and 'seeds = [0, 1, 2]' in full
    configs = {line.split()[2] for line in commands}
    assert len(configs) == 28
    for config in configs:
        for seed in (0, 1, 2):
            assert sum(f'randomness.seed={seed}' in c and config in c for c in commands) == 1
    assert 'missing inputs' in out and 'pretrain/deit_small_patch16_224-cd65a155.pth' in out


def test_a_full_size_suite_stops_before_anything_when_inputs_are_missing(tmp_path):
    suite = tmp_path / 'one_pair.py'
    suite.write_text("pairs = [('configs/coco/mask-rcnn_deit-s16_fpn_8xb2-1x_coco.py',\n"
                     "          'configs/coco/mask-rcnn_deit-s16-cb_fpn_8xb2-1x_coco.py')]\n"
                     "seeds = [0]\n")
    env = {**os.environ, 'PYTHONWARNINGS': 'ignore'}
    proc = subprocess.run([sys.executable, str(REPO / 'tools' / 'run_suite.py'), str(suite)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert 'missing inputs; nothing was started' in proc.stdout
    assert 'data/coco/annotations/instances_train2017.json  (needed by 2 configs' in proc.stdout
    assert 'pretrain/deit_small_patch16_224-cd65a155.pth  (needed by 2 configs' in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ['one_pair.py']
