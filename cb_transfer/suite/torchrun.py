"""The torchrun executor: each run is one torchrun launch of ``nproc`` processes (gloo on a
machine without CUDA), one run after another, each process doing the run's work
(``python -m cb_transfer.suite.job``: train, test, record, the same work as every executor).
"""
import os
import shlex
import subprocess
import sys
from typing import List

from ..run_dir import RunDir, RunHeld
from .console import Console
from .executor import Executor, prepare
from .plan import Plan, PlannedRun


def show(cmd: List[str]) -> str:
    return ' '.join(shlex.quote(str(c)) for c in cmd)


class TorchrunExecutor(Executor):
    """Runs each unfinished run through torchrun with ``nproc`` processes on this node (more
    nodes: ``NNODES``, ``NODE_RANK``, ``MASTER_ADDR`` and ``PORT`` in the environment, as for
    ``tools/dist_train.sh``)."""

    def __init__(self, nproc: int) -> None:
        self.nproc = nproc

    def command(self, plan: Plan, run: PlannedRun) -> List[str]:
        env = os.environ
        return [sys.executable, '-m', 'torch.distributed.run',
                f'--nnodes={env.get("NNODES", "1")}', f'--node_rank={env.get("NODE_RANK", "0")}',
                f'--master_addr={env.get("MASTER_ADDR", "127.0.0.1")}',
                f'--master_port={env.get("PORT", "29500")}', f'--nproc_per_node={self.nproc}',
                '-m', 'cb_transfer.suite.job', os.path.abspath(plan.suite_file),
                '--work-dir', os.path.abspath(plan.root), '--run-name', run.name,
                '--launcher', 'pytorch']

    def describe(self, plan: Plan, run: PlannedRun) -> str:
        weights = f' (weights: {run.weights.describe()})' if run.weights else ''
        return f'{run.name}{weights}: {show(self.command(plan, run))}'

    def carry_out(self, plan: Plan, console: Console) -> List[str]:
        todo = [r for r in plan.runs if not RunDir(r.work_dir).finished]
        failed: List[str] = []
        for index, run in enumerate(todo, 1):
            label = f'[{index}/{len(todo)}] {run.name}'
            upstream = plan.waits_for(run)
            if upstream is not None and upstream.name in failed:
                console.line(f'{label}: skipped, its upstream run {upstream.name} failed')
                failed.append(run.name)
                continue
            run_dir = RunDir(run.work_dir)
            try:
                run_dir.claim()
            except RunHeld as err:
                console.line(f'{label}: not run, {err}')
                failed.append(run.name)
                continue
            console.line(f'{label}: {prepare(run)}, {self.nproc} processes')
            try:
                subprocess.run(self.command(plan, run), check=True)
            except subprocess.CalledProcessError as err:
                failed.append(run.name)
                console.line(f'{label}: FAILED ({show(err.cmd)} exited {err.returncode})')
                continue
            finally:
                run_dir.release()
            console.line(f'{label}: done')
        return failed
