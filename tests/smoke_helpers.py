"""Running the smoke configs from the tests: commands, work_dir reading, killing part-way."""
import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Dict, List

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / 'configs' / 'smoke'
SEG = SMOKE / 'upernet_vit-tiny-p8_1xb4-240iter_smoke-ade20k-64x64.py'
DET = SMOKE / 'mask-rcnn_vit-tiny-p8_fpn_1xb4-240iter_smoke-coco-128x128.py'
SITE = Path(sysconfig.get_paths()['purelib'])  # where mmseg and mmdet are installed


def schedule(iters: int, every: int) -> List[str]:
    """--cfg-options that shorten a smoke config to ``iters``, evaluating and saving every ``every``."""
    return [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={every}',
            f'default_hooks.checkpoint.interval={every}', 'default_hooks.checkpoint.max_keep_ckpts=5',
            f'param_scheduler.1.end={iters}']


def command(script, config, work_dir, *args, cfg_options=()) -> List[str]:
    cmd = [sys.executable, str(script), str(config), '--work-dir', str(work_dir), *map(str, args)]
    if cfg_options:
        cmd += ['--cfg-options', *cfg_options]
    return cmd


def run(cmd, cwd, timeout=600) -> subprocess.CompletedProcess:
    env = {**os.environ, 'PYTHONWARNINGS': 'ignore'}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f'{" ".join(map(str, cmd))} failed ({proc.returncode}):\n'
                    f'{proc.stdout[-2000:]}\n{proc.stderr[-6000:]}')
    return proc


def run_killed_after(cmd, cwd, work_dir: Path, checkpoint: str, timeout=600) -> None:
    """Start ``cmd`` and kill it (SIGKILL, as a crash or a pre-empted job would end) as soon as
    mmengine has recorded ``checkpoint`` as its last one."""
    env = {**os.environ, 'PYTHONWARNINGS': 'ignore'}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    marker = work_dir / 'last_checkpoint'
    deadline = time.time() + timeout
    try:
        while not (marker.exists() and marker.read_text().strip().endswith(checkpoint)):
            if proc.poll() is not None:
                pytest.fail(f'{cmd} ended ({proc.returncode}) before saving {checkpoint}')
            if time.time() > deadline:
                pytest.fail(f'{cmd} did not save {checkpoint} in {timeout} s')
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, 'the run finished before it could be killed'


def scalars(work_dir: Path) -> Dict[int, dict]:
    """Every evaluation mmengine logged under ``work_dir`` (all timestamp folders), by step."""
    out = {}
    for path in sorted(work_dir.glob('*/vis_data/scalars.json')):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if not any(k.startswith('lr') or k == 'loss' for k in record):
                out.setdefault(record['step'], {}).update(record)
    return out


def metrics_of_test(work_dir: Path) -> dict:
    """The metrics tools/test.py wrote (``<work_dir>/<timestamp>/<timestamp>.json``)."""
    files = sorted(p for p in work_dir.glob('*/*.json') if p.stem == p.parent.name)
    assert files, f'no test metrics under {work_dir}'
    return json.loads(files[-1].read_text())
