"""The Slurm executor: every unfinished run of the plan is its own Slurm job, submitted at once
through submitit, each training with mmengine's Slurm launcher and then testing
(:func:`cb_transfer.suite.job.execute`).

- A downstream run that starts from an upstream run's checkpoint depends on that run's job
  (``afterok``) while the upstream run is not finished, and reads the checkpoint when it starts.
- Preemption and time limits: submitit catches Slurm's signal and requeues the job, and a requeued
  job resumes from the newest readable checkpoint in its work dir (with ``ExactResumeHook``, to
  the same weights). A job requeued more than ``max_requeues`` times fails instead of going on.
- A run's state is :func:`cb_transfer.suite.lifecycle.run_status` of its work dir and of its
  latest job (the job ids from submitit's files in ``<work dir>/slurm/``; the job's state from
  :func:`~cb_transfer.suite.lifecycle.slurm_job`; the error it ended with from submitit's job
  object), never a list of our own that could disagree with them. Submitting again is therefore
  safe: finished runs are skipped, queued or running jobs are left alone, and failed ones (or
  ones stuck behind a failed upstream job) are submitted again (the loop,
  :func:`cb_transfer.suite.loop.carry_out`).

Needs ``sbatch``, ``scontrol`` and ``scancel`` on the PATH; without them ``--launcher slurm`` stops
with an error rather than running the matrix on the login node.
"""
import contextlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import submitit
from submitit.core.utils import JobPaths
from submitit.slurm.slurm import SlurmJobEnvironment

from ..run_dir import RunDir
from .console import Console, clock
from .job import execute
from .lifecycle import Job, Phase, Status, claimed, slurm_job
from .loop import Executor, _count
from .plan import Plan, PlannedRun

SLURM_DIR = 'slurm'
# submitit's name for a submission's pickle, with the job id as the group
SUBMITTED = re.compile('^' + re.escape(JobPaths('.').submitted_pickle.name).replace('%j', r'(\d+)')
                       + '$')


class SlurmUnavailable(RuntimeError):
    """Slurm's commands are not on this machine."""


def require_slurm() -> None:
    missing = [c for c in ('sbatch', 'scontrol', 'scancel') if shutil.which(c) is None]
    if missing:
        raise SlurmUnavailable(
            f'--launcher slurm needs Slurm\'s {", ".join(missing)} on the PATH, and '
            f'{"it is" if len(missing) == 1 else "they are"} not there: run this on a Slurm login '
            'node (or stand one up with tools/slurm_local_cluster.sh). Nothing was submitted, and '
            'nothing runs here instead.')


@dataclass
class SlurmResources:
    """What each job asks Slurm for (sbatch's options); the suite file's ``slurm = dict(...)``
    and the command line set them."""
    partition: Optional[str] = None
    nodes: int = 1
    gpus_per_node: int = 8
    tasks_per_node: Optional[int] = None   # default: one per GPU, or 1 without GPUs
    cpus_per_task: Optional[int] = None
    mem_gb: Optional[float] = None
    time_min: int = 24 * 60
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    extra: Dict[str, str] = field(default_factory=dict)   # any other sbatch option
    max_requeues: int = 3

    def sbatch_parameters(self, run: PlannedRun, dependency: Optional[str]) -> dict:
        """submitit's SlurmExecutor parameters for ``run`` (sbatch options by their names)."""
        params = dict(job_name=f'cb_{run.config_name}_s{run.seed}', nodes=self.nodes,
                      ntasks_per_node=self.tasks_per_node or max(self.gpus_per_node, 1),
                      time=self.time_min, signal_delay_s=120)
        if self.gpus_per_node:
            params['gpus_per_node'] = self.gpus_per_node
        optional = dict(partition=self.partition, cpus_per_task=self.cpus_per_task,
                        mem=f'{self.mem_gb:g}GB' if self.mem_gb else None, account=self.account,
                        qos=self.qos, constraint=self.constraint)
        params.update({k: v for k, v in optional.items() if v is not None})
        additional = dict(self.extra)
        if dependency:
            additional['dependency'] = dependency
        if additional:
            params['additional_parameters'] = additional
        return params


class SlurmJob(submitit.helpers.Checkpointable):
    """What a job runs (pickled by submitit): :func:`execute` for one run, in every task (one
    process of the run's process group each: ranks, world size and master address from Slurm
    through submitit's ``TorchDistributedEnvironment``).

    The job's rank-0 task claims the run first (a requeued job takes over its own claim); a run
    held by another live process fails the job, naming the holder. ``checkpoint`` (submitit's
    hook for preemption and time limits) resubmits the same call: the work dir holds the
    progress, so the job resumes from its newest readable checkpoint.
    """

    def __init__(self, run: PlannedRun, max_requeues: int) -> None:
        self.run, self.max_requeues = run, max_requeues

    def __call__(self):
        environment = submitit.JobEnvironment()
        restarts = int(os.environ.get('SLURM_RESTART_COUNT', '0'))
        if restarts > self.max_requeues:
            raise RuntimeError(f'{self.run.name}: requeued {restarts} times, more than '
                               f'max_requeues={self.max_requeues}; not going on')
        # one rendezvous port per job (every task computes the same), so that jobs sharing a
        # node do not collide
        os.environ.setdefault('MASTER_PORT', str(20000 + int(environment.job_id) % 20000))
        from ..launch import distributed_session, export_slurm_environment
        export_slurm_environment()
        import torch
        if not torch.cuda.is_available() and os.environ.get('SLURM_CPUS_PER_TASK'):
            # the CPUs the job was given, not every core of the node (the thread count changes
            # the rounding, so the local executor's --threads gives the same numbers)
            torch.set_num_threads(int(os.environ['SLURM_CPUS_PER_TASK']))
        print(f'{self.run.name}: Slurm job {environment.job_id}, restart {restarts}, task '
              f'{environment.global_rank} of {environment.num_tasks} on node '
              f'{os.environ.get("SLURMD_NODENAME", environment.node)} of '
              f'{os.environ.get("SLURM_JOB_NODELIST", "?")}', flush=True)
        # rank 0 claims the run before the other tasks meet it in the process group
        with claimed(self.run, keep=[SLURM_DIR]) if environment.global_rank == 0 \
                else contextlib.nullcontext(None) as note:
            if note is not None:
                print(f'{self.run.name}: {note}', flush=True)
            with distributed_session():
                return execute(self.run, launcher='pytorch')


def job_ids(run: PlannedRun) -> List[str]:
    """The ids of the jobs submitted for ``run``, oldest first (from submitit's files)."""
    folder = run.work_dir / SLURM_DIR
    if not folder.is_dir():
        return []
    ids = [m.group(1) for m in map(SUBMITTED.match, os.listdir(folder)) if m]
    return sorted(ids, key=int)


def job_paths(work_dir: Path, job_id: str, task: int = 0) -> JobPaths:
    """submitit's files of a job of the run in ``work_dir`` (one task's log and result)."""
    return JobPaths(Path(work_dir) / SLURM_DIR, job_id, task)


def _error(run: PlannedRun, job_id: str) -> str:
    """The last line of the error a job ended with, as submitit recorded it; '' for none."""
    job = submitit.SlurmJob(run.work_dir / SLURM_DIR, job_id)
    if not job.paths.result_pickle.is_file():
        return ''
    error = job.exception()  # at once: the result is there
    if error is None:
        return ''
    # submitit's message holds the job's traceback between two rulers
    text = str(error).split('-' * 22)
    lines = (text[1] if len(text) > 2 else str(error)).strip().splitlines()
    return lines[-1] if lines else ''


def _sbatch_flags(params: dict) -> str:
    """submitit's parameters as the sbatch options they become (submitit sets the requeue
    signal: ``signal_delay_s`` before the time limit)."""
    flags = {k: v for k, v in params.items()
             if k not in ('additional_parameters', 'signal_delay_s')}
    flags['signal'] = f'{SlurmJobEnvironment.USR_SIG}@{params["signal_delay_s"]}'
    flags.update(params.get('additional_parameters') or {})
    return ' '.join(f'--{k.replace("_", "-")}={v}' for k, v in flags.items())


class SlurmExecutor(Executor):
    """Every unfinished run a Slurm job, submitted at once; fine-tuning jobs wait for their
    pretraining job (``afterok``). With ``wait``, the loop waits until no job is queued."""

    slots = None
    chains = True
    claims_here = False   # the job claims its run
    started_words = ('job', 'submitted')

    def __init__(self, resources: SlurmResources, wait: bool = False,
                 poll_s: float = 30.0) -> None:
        self.resources, self.waits, self.poll_s = resources, wait, poll_s
        self._counts: Optional[str] = None
        self._began = time.time()

    def _executor(self, run: PlannedRun, dependency: Optional[str]) -> submitit.SlurmExecutor:
        executor = submitit.SlurmExecutor(folder=run.work_dir / SLURM_DIR,
                                          max_num_timeout=self.resources.max_requeues)
        executor.update_parameters(**self.resources.sbatch_parameters(run, dependency))
        return executor

    def describe(self, plan: Plan, run: PlannedRun) -> str:
        upstream = plan.waits_for(run)
        dependency = None
        if upstream is not None and not RunDir(upstream.work_dir).done:
            dependency = f'afterok:<job of {upstream.name}>'
        return f'{run.name}: sbatch {_sbatch_flags(self.resources.sbatch_parameters(run, dependency))}'

    def start(self, plan: Plan, run: PlannedRun, note: str,
              upstream: Optional[Job]) -> Tuple[Job, str]:
        require_slurm()
        previous = self.poll(run)
        if previous is not None and previous.phase is not Phase.ENDED:
            # queued behind a job its upstream run no longer is (failed, or submitted again)
            subprocess.run(['scancel', previous.id], check=False)
        dependency = f'afterok:{upstream.id}' if upstream is not None else None
        job = self._executor(run, dependency).submit(SlurmJob(run, self.resources.max_requeues))
        line = f'submitted {run.name}: job {job.job_id}' + (f' ({dependency})' if dependency
                                                             else '')
        return Job(Phase.QUEUED, job.job_id, log=job.paths.stdout), line

    def poll(self, run: PlannedRun) -> Optional[Job]:
        ids = job_ids(run)
        if not ids:
            return None
        view = slurm_job(ids[-1])
        detail = view.detail
        if view.phase is Phase.ENDED:
            error = _error(run, view.id)
            detail = '; '.join(filter(None, [detail, error]))
        return Job(view.phase, view.id, view.blocked, detail, job_paths(run.work_dir, view.id).stdout)

    def status_line(self, run: PlannedRun, status: Status) -> str:
        return status.line(RunDir(run.work_dir).iteration_reached())

    def update(self, statuses: List[Status], console: Console) -> None:
        """While waiting: a line whenever the counts by state change."""
        if not self.waits:
            return
        counts = _count(statuses)
        if counts != self._counts:
            console.line(f'[{clock(time.time() - self._began)}] {counts}')
            self._counts = counts
