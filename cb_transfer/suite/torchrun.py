"""The torchrun executor: each run trains through ``tools/dist_train.sh`` and tests through
``tools/dist_test.sh`` (``GPUS`` processes, gloo on a machine without CUDA), one run after another.
"""
import json
import os
import shlex
import subprocess
import sys
from typing import List, Optional

from .console import Console
from .job import DONE, is_done, iteration_reached, resolve_weights
from .plan import REPO, Plan, PlannedRun

LAST_CHECKPOINT = '<last checkpoint>'


def commands(run: PlannedRun, launcher: str, pretrained: Optional[str]) -> List[List[str]]:
    """The commands that train and test ``run``: tools/train.py and tools/test.py
    (``launcher='none'``) or the torchrun scripts (``'pytorch'``). The test's checkpoint is
    ``LAST_CHECKPOINT`` until training has ended."""
    tools = REPO / 'tools'
    opts = ['--cfg-options', *run.options_as_args()]
    wd = ['--work-dir', str(run.work_dir)]
    init = ['--pretrained', pretrained] if pretrained else []
    if launcher == 'none':
        train = [sys.executable, str(tools / 'train.py'), run.config, *wd, '--resume', *init, *opts]
        test = [sys.executable, str(tools / 'test.py'), run.config, LAST_CHECKPOINT, *wd, *init,
                *opts]
    else:
        train = [str(tools / 'dist_train.sh'), run.config, *wd, '--resume', *init, *opts]
        test = [str(tools / 'dist_test.sh'), run.config, LAST_CHECKPOINT, *wd, *init, *opts]
    return [train, test]


def show(cmd: List[str]) -> str:
    return ' '.join(shlex.quote(str(c)) for c in cmd)


def run_torchrun(plan: Plan, console: Console, gpus: int) -> List[str]:
    """Run every unfinished run through torchrun, in order; returns the runs that failed."""
    env = dict(os.environ, PYTHON=sys.executable, GPUS=str(gpus))
    todo = [r for r in plan.runs if not is_done(r)]
    failed = []
    for index, run in enumerate(todo, 1):
        label = f'[{index}/{len(todo)}] {run.name}'
        upstream = plan.upstream_of(run)
        if upstream is not None and upstream.name in failed:
            console.line(f'{label}: skipped, its upstream run {upstream.name} failed')
            failed.append(run.name)
            continue
        pretrained = resolve_weights(run)
        console.line(f'{label}: {gpus} processes')
        try:
            train, test = commands(run, 'pytorch', pretrained)
            subprocess.run(train, check=True, env=env)
            checkpoint = (run.work_dir / 'last_checkpoint').read_text().strip()
            subprocess.run([c if c != LAST_CHECKPOINT else checkpoint for c in test], check=True,
                           env=env)
        except subprocess.CalledProcessError as err:
            failed.append(run.name)
            console.line(f'{label}: FAILED ({show(err.cmd)} exited {err.returncode})')
            continue
        (run.work_dir / DONE).write_text(json.dumps(dict(
            name=run.name, checkpoint=checkpoint, iters=iteration_reached(run.work_dir),
            pretrained=pretrained, launcher='pytorch'), indent=2))
        console.line(f'{label}: done')
    return failed
