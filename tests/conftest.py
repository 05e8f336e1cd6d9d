"""Shared helpers and the expensive end-to-end runs that several test files read.

``local_suite`` runs the default suite, reduced (pretraining for 2 epochs, fine-tuning for 40 and
20 iterations, two seeds), once per session through ``tools/run_suite.py``; the suite, upstream,
report, attention and Slurm tests all read its work dir.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

# as every tool does: registries, checkpoint allowlist, the fast base-config lookup
import cb_transfer  # noqa: F401
from cb_transfer.data import make_smoke_data

REPO = Path(__file__).resolve().parents[1]
SMOKE = 'configs/smoke'
UPSTREAM = [f'{SMOKE}/vit-tiny-p8{cb}_1xb32-12e_smoke-in1k-64x64.py' for cb in ('', '-cb')]
SEG = [f'{SMOKE}/upernet_vit-tiny-p8{cb}_1xb4-240iter_smoke-ade20k-64x64.py' for cb in ('', '-cb')]
DET = [f'{SMOKE}/mask-rcnn_vit-tiny-p8{cb}_fpn_1xb4-240iter_smoke-coco-128x128.py'
       for cb in ('', '-cb')]
# The default suite with short schedules; every executor runs it with these options.
SEG_ITERS = 40  # the fine-tuning runs that get interrupted: a checkpoint every 10 iterations
REDUCED = '''
_base_ = {smoke!r}
seeds = [0, 1]
_up_short = {{'train_cfg.max_epochs': 2, 'train_cfg.val_interval': 1,
              'default_hooks.checkpoint.interval': 1, 'param_scheduler.1.end': 2}}
_seg_short = {{'train_cfg.max_iters': {seg_iters}, 'train_cfg.val_interval': {seg_val},
               'default_hooks.checkpoint.interval': 10, 'param_scheduler.1.end': {seg_iters},
               'default_hooks.checkpoint.max_keep_ckpts': 6}}
_det_short = {{'train_cfg.max_iters': 20, 'train_cfg.val_interval': 20,
               'default_hooks.checkpoint.interval': 20, 'param_scheduler.1.end': 20,
               'param_scheduler.1.milestones': [15]}}
cfg_options = {{{up0!r}: _up_short, {up1!r}: _up_short, {seg0!r}: _seg_short,
               {seg1!r}: _seg_short, {det0!r}: _det_short, {det1!r}: _det_short}}
'''


END_TO_END = {'smoke_cwd', 'local_suite'}


def pytest_collection_modifyitems(items):
    """Tests that train (they use the shared end-to-end fixtures) are marked ``e2e``:
    ``make test-fast`` leaves them out for the edit loop."""
    for item in items:
        if END_TO_END & set(getattr(item, 'fixturenames', ())):
            item.add_marker(pytest.mark.e2e)


def run_python(code: str, cwd=None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (nothing imported yet); fail with its output if it
    fails."""
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f'subprocess failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n'
                    f'{proc.stderr[-5000:]}')
    return proc


def reduced_suite(directory: Path, name: str = 'reduced', detection: bool = True) -> Path:
    """Write the reduced default suite (segmentation only without ``detection``)."""
    text = REDUCED.format(smoke=str(REPO / 'configs' / 'suites' / 'smoke.py'),
                          up0=UPSTREAM[0], up1=UPSTREAM[1], seg0=SEG[0], seg1=SEG[1],
                          det0=DET[0], det1=DET[1], seg_iters=SEG_ITERS,
                          seg_val=SEG_ITERS // 2)
    if not detection:
        text += f"downstream = [dict(plain={SEG[0]!r}, cb={SEG[1]!r}, weights='vit_tiny')]\n"
    path = directory / f'{name}.py'
    path.write_text(text)
    return path


def suite_command(suite: Path, work_dir: Path, *args) -> list:
    return [sys.executable, str(REPO / 'tools' / 'run_suite.py'), str(suite), '--work-dir',
            str(work_dir), *map(str, args)]


def run_suite(cmd: list, cwd: Path, env: dict = None, timeout: int = 900, check: bool = True
              ) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f'{" ".join(cmd)} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n'
                    f'{proc.stderr[-4000:]}')
    return proc


@pytest.fixture(scope='session')
def smoke_cwd(tmp_path_factory) -> Path:
    """A working directory with the generated data where the smoke configs look for it."""
    root = tmp_path_factory.mktemp('smoke')
    make_smoke_data(root / 'data' / 'smoke')
    return root


@pytest.fixture(scope='session')
def local_suite(smoke_cwd) -> SimpleNamespace:
    """The reduced default suite, run once by the local executor (two runs at a time, one
    thread each), with the console captured as a user would see it."""
    suite = reduced_suite(smoke_cwd)
    work_dir = smoke_cwd / 'work_dirs' / 'reduced'
    proc = run_suite(suite_command(suite, work_dir, '--jobs', 2, '--threads', 1), smoke_cwd)
    return SimpleNamespace(cwd=smoke_cwd, suite=suite, work_dir=work_dir, console=proc.stdout,
                           stderr=proc.stderr)
