"""The torchrun executor: each run is one torchrun launch of ``nproc`` processes (gloo on a
machine without CUDA), one run after another, each process doing the run's work
(``python -m cb_transfer.suite.job``: train, test, record, the same work as every executor).
"""
import os
import shlex
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

from .lifecycle import Job, Phase
from .loop import Executor
from .plan import Plan, PlannedRun


def show(cmd: List[str]) -> str:
    return ' '.join(shlex.quote(str(c)) for c in cmd)


class TorchrunExecutor(Executor):
    """Runs each unfinished run through torchrun with ``nproc`` processes on this node (more
    nodes: ``NNODES``, ``NODE_RANK``, ``MASTER_ADDR`` and ``PORT`` in the environment, as for
    ``tools/dist_train.sh``), one at a time."""

    slots = 1

    def __init__(self, nproc: int) -> None:
        self.nproc = nproc
        self.launches: Dict[str, subprocess.Popen] = {}

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

    def start(self, plan: Plan, run: PlannedRun, note: str,
              upstream: Optional[Job]) -> Tuple[Job, str]:
        self.launches[run.name] = subprocess.Popen(self.command(plan, run))
        return self.poll(run), f'{run.name}: {note}, {self.nproc} processes'

    def poll(self, run: PlannedRun) -> Optional[Job]:
        launch = self.launches.get(run.name)
        if launch is None:
            return None
        code = launch.poll()
        if code is None:
            return Job(Phase.RUNNING, str(launch.pid))
        return Job(Phase.ENDED, str(launch.pid),
                   detail=f'{show(launch.args)} exited {code}' if code else '')

    def wait(self, timeout: float) -> None:
        running = [p for p in self.launches.values() if p.poll() is None]
        try:
            running and running[0].wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        for launch in self.launches.values():  # only where the loop ended by an error
            if launch.poll() is None:
                launch.terminate()
                launch.wait()
