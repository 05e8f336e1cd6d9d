"""What the tests share: the smoke configs, the reduced suite, a toy Runner, and the ways to run
and stop commands. (Fixtures live in conftest.py; tests import helpers from here.)"""
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn

from cb_transfer.run_dir import RunDir

REPO = Path(__file__).resolve().parents[1]
SMOKE = 'configs/smoke'
UPSTREAM = [f'{SMOKE}/vit-tiny-p8{cb}_1xb32-12e_smoke-in1k-64x64.py' for cb in ('', '-cb')]
SEG = [f'{SMOKE}/upernet_vit-tiny-p8{cb}_1xb4-240iter_smoke-ade20k-64x64.py' for cb in ('', '-cb')]
DET = [f'{SMOKE}/mask-rcnn_vit-tiny-p8{cb}_fpn_1xb4-240iter_smoke-coco-128x128.py'
       for cb in ('', '-cb')]
SITE = Path(sysconfig.get_paths()['purelib'])  # where mmseg and mmdet are installed

# The default suite with short schedules; every executor runs it with these options.
SEG_ITERS = 40  # the fine-tuning runs that get interrupted: a checkpoint every 10 iterations
REDUCED = '''
_base_ = {smoke!r}
upstream_seeds = [0, 1]
seeds = [0]
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
# the full reduced suite's robustness stage (a segmentation-only one has none of its own)
REDUCED_ROBUSTNESS = ("robustness = dict(corruptions=['gaussian_noise', 'fog'], severities=[3], "
                      'entries=[0])\n')


def reduced_suite(directory: Path, name: str = 'reduced', detection: bool = True,
                  extra: str = '') -> Path:
    """Write the reduced default suite (segmentation only without ``detection``), then
    ``extra`` (suite-file lines that override it)."""
    text = REDUCED.format(smoke=str(REPO / 'configs' / 'suites' / 'smoke.py'),
                          up0=UPSTREAM[0], up1=UPSTREAM[1], seg0=SEG[0], seg1=SEG[1],
                          det0=DET[0], det1=DET[1], seg_iters=SEG_ITERS,
                          seg_val=SEG_ITERS // 2)
    if detection:
        text += REDUCED_ROBUSTNESS
    else:
        text += (f"downstream = [dict(plain={SEG[0]!r}, cb={SEG[1]!r}, weights='vit_tiny')]\n"
                 'robustness = None\n')  # not the preset's
    path = directory / f'{name}.py'
    path.write_text(text + textwrap.dedent(extra))
    return path


ARMS_REDUCED = '''
_base_ = {arms!r}
_up_short = {{'train_cfg.max_epochs': 2, 'train_cfg.val_interval': 1,
              'default_hooks.checkpoint.interval': 1, 'param_scheduler.1.end': 2}}
_seg_short = {{'train_cfg.max_iters': 40, 'train_cfg.val_interval': 20,
               'default_hooks.checkpoint.interval': 20, 'param_scheduler.1.end': 40}}
cfg_options = {{**{{c: _up_short for c in {up!r}}}, **{{c: _seg_short for c in {seg!r}}}}}
'''
ARM_TAGS = ('', '-cb', '-reg4', '-cb-reg4')


def arms_suite_file(directory: Path) -> Path:
    """The arms smoke suite (configs/suites/arms_smoke.py) with short schedules."""
    path = directory / 'arms_reduced.py'
    path.write_text(ARMS_REDUCED.format(
        arms=str(REPO / 'configs' / 'suites' / 'arms_smoke.py'),
        up=[f'{SMOKE}/vit-tiny-p8{t}_1xb32-12e_smoke-in1k-64x64.py' for t in ARM_TAGS],
        seg=[f'{SMOKE}/upernet_vit-tiny-p8{t}_1xb4-240iter_smoke-ade20k-64x64.py'
             for t in ARM_TAGS]))
    return path


def copy_runs(source: Path, work_dir: Path, *parts) -> None:
    """Finished runs of a suite's work dir (``parts``, relative to it), copied into another
    one's (without their robustness evaluations), their records pointing at the copies."""
    for part in parts:
        shutil.copytree(source / part, work_dir / part, symlinks=True,
                        ignore=shutil.ignore_patterns('robustness'))
        for done in (work_dir / part).rglob('record.json'):
            record = json.loads(done.read_text())
            record['final_checkpoint'] = str(done.parent / Path(record['final_checkpoint']).name)
            done.write_text(json.dumps(record))


def cfg_options(run) -> List[str]:
    """A planned run's config keys (its ``overrides``) as ``--cfg-options`` arguments: the same
    run through a tool."""
    return [f'{k}={v if isinstance(v, str) else json.dumps(v)}' for k, v in run.overrides.items()]


def suite_command(suite: Path, work_dir: Path, *args) -> list:
    return [sys.executable, str(REPO / 'tools' / 'run_suite.py'), str(suite), '--work-dir',
            str(work_dir), *map(str, args)]


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


def evaluations(work_dir: Path) -> Dict[int, dict]:
    """Every evaluation mmengine logged under ``work_dir`` (all its starts), by step."""
    return RunDir(work_dir).scalars()[1]


def recorded_runs(root: Path, stage: str = '*', robustness: bool = False) -> List[RunDir]:
    """The training runs under a suite's work dir that have a record (``stage``: 'upstream',
    'two-stage', ...: the first folder under the root), or their robustness evaluations."""
    found = [RunDir(p.parent) for p in root.glob(f'{stage}/**/record.json')]
    return sorted((r for r in found if (r.path.name == 'robustness') is robustness),
                  key=lambda r: r.path)


def state_dict(path) -> Dict[str, torch.Tensor]:
    return torch.load(path, map_location='cpu')['state_dict']


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ---- commands -------------------------------------------------------------------------------
# One thread per process: runs go side by side where they can (two cores), and a resumed run is
# compared with its uninterrupted twin, which the same thread count makes exact.
ENV = {**os.environ, 'PYTHONWARNINGS': 'ignore', 'OMP_NUM_THREADS': '1'}


def run_python(code: str, cwd=None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (nothing imported yet); fail with its output if it
    fails."""
    return run([sys.executable, '-c', textwrap.dedent(code)], cwd, timeout=timeout)


def run(cmd: list, cwd=None, env: dict = None, timeout: int = 900, check: bool = True
        ) -> subprocess.CompletedProcess:
    """Run a command to its end; with ``check``, fail the test with its output if it fails."""
    proc = subprocess.run(list(map(str, cmd)), cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f'{" ".join(map(str, cmd))} exited {proc.returncode}:\n'
                    f'{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}')
    return proc


def start(cmd, cwd, env: dict = None) -> subprocess.Popen:
    """Start ``cmd`` in its own process group, its output going to temporary files; commands
    started one after another go side by side."""
    out, err = tempfile.TemporaryFile('w+'), tempfile.TemporaryFile('w+')
    proc = subprocess.Popen(list(map(str, cmd)), cwd=cwd, env={**ENV, **(env or {})},
                            stdout=out, stderr=err, start_new_session=True)
    proc.logs = (out, err)
    return proc


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL a started command's whole process group, if it still runs."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def finish(proc: subprocess.Popen, timeout=600, check: bool = True
           ) -> subprocess.CompletedProcess:
    """Wait for a started command; with ``check``, fail with its output if it fails."""
    try:
        proc.wait(timeout=timeout)
    finally:
        _kill(proc)
        texts = []
        for log in proc.logs:
            log.seek(0)
            texts.append(log.read())
            log.close()
    if check and proc.returncode != 0:
        pytest.fail(f'{" ".join(map(str, proc.args))} failed ({proc.returncode}):\n'
                    f'{texts[0][-2000:]}\n{texts[1][-6000:]}')
    return subprocess.CompletedProcess(proc.args, proc.returncode, *texts)


@contextlib.contextmanager
def side_by_side(cwd) -> Iterator:
    """Yields ``start(cmd)``, which starts ``cmd`` in the background; what still runs when the
    block ends (a failure) is killed."""
    procs = []

    def start_here(cmd, env: dict = None) -> subprocess.Popen:
        procs.append(start(cmd, cwd, env))
        return procs[-1]

    try:
        yield start_here
    finally:
        for proc in procs:
            _kill(proc)


def kill_when(proc: subprocess.Popen, done, what: str, timeout=600) -> None:
    """Kill a started command (SIGKILL, as a crash or a pre-empted job would end) as soon as
    ``done()`` is true; fail if it ends first or ``timeout`` passes (``what``: the awaited state,
    for the message)."""
    deadline = time.time() + timeout
    try:
        while not done():
            if proc.poll() is not None:
                pytest.fail(f'{proc.args} ended ({proc.returncode}) before {what}')
            if time.time() > deadline:
                pytest.fail(f'{proc.args} did not reach {what} in {timeout} s')
            time.sleep(0.05)
    finally:
        _kill(proc)
        for log in proc.logs:
            log.close()
    assert proc.returncode == -signal.SIGKILL, 'the run finished before it could be killed'


def kill_after(proc: subprocess.Popen, work_dir: Path, checkpoint: str, timeout=600) -> None:
    """Kill a started command as soon as mmengine has recorded ``checkpoint`` as its last one."""
    marker = work_dir / 'last_checkpoint'
    kill_when(proc, lambda: marker.exists() and marker.read_text().strip().endswith(checkpoint),
              f'saving {checkpoint}', timeout)


# ---- a toy Runner -------------------------------------------------------------------------
class ToyRegressor(BaseModel):
    """A linear regressor with dropout (random draws in training, as augmentation and drop
    path)."""

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, inputs, targets, mode='tensor'):
        out = self.linear(self.drop(inputs))
        if mode == 'loss':
            return dict(loss=((out - targets) ** 2).mean())
        return [dict(out=o, target=t) for o, t in zip(out, targets)]


class SquaredError(BaseMetric):
    default_prefix = 'toy'

    def process(self, data_batch, data_samples):
        self.results += [float((s['out'] - s['target']) ** 2) for s in data_samples]

    def compute_metrics(self, results):
        return dict(mse=sum(results) / len(results))


_TOY_RUNS = itertools.count()


def toy_runner(work_dir: Path, max_iters: int, save_every: int, validate_every: int = 0,
               dropout: float = 0.0, hooks=(), **runner_args) -> Runner:
    """An mmengine Runner training :class:`ToyRegressor` on eight points, saving every
    ``save_every`` iterations and validating every ``validate_every`` (0: never)."""
    data = [dict(inputs=torch.tensor([i / 8, 1 - i / 8]), targets=torch.tensor([i / 4]))
            for i in range(8)]
    loader = dict(dataset=data, batch_size=2, collate_fn=dict(type='default_collate'),
                  sampler=dict(type='InfiniteSampler', shuffle=True))
    validation = {}
    if validate_every:
        validation = dict(
            val_dataloader={**loader, 'sampler': dict(type='DefaultSampler', shuffle=False)},
            val_cfg=dict(), val_evaluator=[SquaredError()])
    torch.manual_seed(0)  # the model is built here, before the Runner seeds
    return Runner(
        model=ToyRegressor(dropout), work_dir=str(work_dir), train_dataloader=loader,
        train_cfg=dict(by_epoch=False, max_iters=max_iters,
                       val_interval=validate_every or max_iters + 1),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.05)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=save_every,
                                           by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1, log_metric_by_epoch=False)),
        custom_hooks=[dict(type='cb_transfer.ExactResumeHook'), *hooks],
        randomness=dict(seed=0), experiment_name=f'toy_{next(_TOY_RUNS)}',  # one logger a name
        **validation, **runner_args)


# ---- one run, several processes ----------------------------------------------------------------
def one_run_suite(directory: Path) -> Path:
    """The reduced suite's smallest run alone (the plain arm's pretraining, seed 0): what the
    multi-process tests run through every launcher."""
    return reduced_suite(directory, 'one_run', detection=False, extra=f'''
        upstream = dict(_delete_=True, vit_tiny=dict(plain={UPSTREAM[0]!r}))
        upstream_seeds = [0]
        downstream = []
        seeds = [0]
        ''')


def job_processes(job_id: str) -> List[int]:
    """The processes of a Slurm job on this machine (its tasks: the Python processes whose
    environment names the job)."""
    pids = []
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / 'environ').read_bytes().split(b'\0')
            command = (entry / 'cmdline').read_bytes()
        except OSError:
            continue
        if f'SLURM_JOB_ID={job_id}'.encode() in environ and b'submitit' in command:
            pids.append(int(entry.name))
    return pids


def kill_after_line(proc: subprocess.Popen, path: Path, lines: int, timeout=600) -> None:
    """Kill a started command (SIGKILL) as soon as ``path`` holds ``lines`` complete lines."""
    kill_when(proc, lambda: path.exists() and path.read_text().count('\n') >= lines,
              f'{path} had {lines} lines', timeout)
