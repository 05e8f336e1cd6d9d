"""Running the smoke configs from the tests: commands, work_dir reading, killing part-way."""
import contextlib
import json
import os
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / 'configs' / 'smoke'
SEG = SMOKE / 'upernet_vit-tiny-p8_1xb4-240iter_smoke-ade20k-64x64.py'
DET = SMOKE / 'mask-rcnn_vit-tiny-p8_fpn_1xb4-240iter_smoke-coco-128x128.py'
SITE = Path(sysconfig.get_paths()['purelib'])  # where mmseg and mmdet are installed


def schedule(iters: int, every: int) -> List[str]:
    """--cfg-options that shorten a smoke config to ``iters``, evaluating and saving every
    ``every``."""
    return [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={every}',
            f'default_hooks.checkpoint.interval={every}',
            'default_hooks.checkpoint.max_keep_ckpts=5', f'param_scheduler.1.end={iters}']


def command(script, config, work_dir, *args, cfg_options=()) -> List[str]:
    cmd = [sys.executable, str(script), str(config), '--work-dir', str(work_dir), *map(str, args)]
    if cfg_options:
        cmd += ['--cfg-options', *cfg_options]
    return cmd


# One thread per run: runs go side by side where they can (two cores), and a
# resumed run is compared with its uninterrupted twin, which the same thread count makes exact.
ENV = {**os.environ, 'PYTHONWARNINGS': 'ignore', 'OMP_NUM_THREADS': '1'}


def start(cmd, cwd) -> subprocess.Popen:
    """Start ``cmd`` in its own process group, its output going to temporary files; runs started
    one after another go side by side."""
    out, err = tempfile.TemporaryFile('w+'), tempfile.TemporaryFile('w+')
    proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=out, stderr=err,
                            start_new_session=True)
    proc.logs = (out, err)
    return proc


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL a started command's whole process group, if it still runs."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def finish(proc: subprocess.Popen, timeout=600) -> subprocess.CompletedProcess:
    """Wait for a started command; fail with its output if it fails."""
    try:
        proc.wait(timeout=timeout)
    finally:
        _kill(proc)
        texts = []
        for log in proc.logs:
            log.seek(0)
            texts.append(log.read())
            log.close()
    if proc.returncode != 0:
        pytest.fail(f'{" ".join(map(str, proc.args))} failed ({proc.returncode}):\n'
                    f'{texts[0][-2000:]}\n{texts[1][-6000:]}')
    return subprocess.CompletedProcess(proc.args, proc.returncode, *texts)


@contextlib.contextmanager
def side_by_side(cwd) -> Iterator:
    """Yields ``start(cmd)``, which starts ``cmd`` in the background; what still runs when the
    block ends (a failure) is killed."""
    procs = []

    def start_here(cmd) -> subprocess.Popen:
        procs.append(start(cmd, cwd))
        return procs[-1]

    try:
        yield start_here
    finally:
        for proc in procs:
            _kill(proc)


def kill_after(proc: subprocess.Popen, work_dir: Path, checkpoint: str, timeout=600) -> None:
    """Kill a started command (SIGKILL, as a crash or a pre-empted job would end) as soon as
    mmengine has recorded ``checkpoint`` as its last one."""
    marker = work_dir / 'last_checkpoint'
    deadline = time.time() + timeout
    try:
        while not (marker.exists() and marker.read_text().strip().endswith(checkpoint)):
            if proc.poll() is not None:
                pytest.fail(f'{proc.args} ended ({proc.returncode}) before saving {checkpoint}')
            if time.time() > deadline:
                pytest.fail(f'{proc.args} did not save {checkpoint} in {timeout} s')
            time.sleep(0.05)
    finally:
        _kill(proc)
        for log in proc.logs:
            log.close()
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
