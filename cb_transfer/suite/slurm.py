"""The Slurm executor: every unfinished run of the plan is its own Slurm job, submitted at once
through submitit, each training with mmengine's Slurm launcher and then testing
(:func:`cb_transfer.suite.job.execute`).

- A downstream run that starts from an upstream run's checkpoint depends on that run's job
  (``afterok``) while the upstream run is not finished, and reads the checkpoint when it starts.
- Preemption and time limits: submitit catches Slurm's signal and requeues the job, and a requeued
  job resumes from the newest readable checkpoint in its work dir (with ``ExactResumeHook``, to
  the same weights). A job requeued more than ``max_requeues`` times fails instead of going on.
- A run's state is read from its work dir (the done record; submitit's files in
  ``<work dir>/slurm/``, whose names carry the job ids; its result file) and from the scheduler
  (``scontrol show job``), never from a list of our own that could disagree with them.
  Submitting again is therefore safe: finished runs are skipped, queued or running jobs are left
  alone, and failed ones (or ones stuck behind a failed upstream job) are submitted again.

Needs ``sbatch``, ``scontrol`` and ``scancel`` on the PATH; without them ``--launcher slurm`` stops
with an error rather than running the matrix on the login node.
"""
import os
import pickle
import re
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import submitit
from submitit.core.utils import JobPaths
from submitit.slurm.slurm import SlurmJobEnvironment

from ..run_dir import RunDir
from .console import Console, clock
from .executor import Executor, prepare
from .job import execute
from .plan import Plan, PlannedRun

SLURM_DIR = 'slurm'
# submitit's name for a submission's pickle, with the job id as the group
SUBMITTED = re.compile('^' + re.escape(JobPaths('.').submitted_pickle.name).replace('%j', r'(\d+)')
                       + '$')
# scontrol's job states, as this executor reports them
PENDING_STATES = {'PENDING', 'CONFIGURING', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED',
                  'RESV_DEL_HOLD', 'SUSPENDED', 'RESIZING'}
RUNNING_STATES = {'RUNNING', 'COMPLETING', 'STAGE_OUT', 'SIGNALING'}
NEVER = 'DependencyNeverSatisfied'


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
        run_dir = RunDir(self.run.work_dir)
        if environment.global_rank == 0:  # before the other tasks meet it in the process group
            taken_over = run_dir.claim()
            if taken_over is not None:
                print(f'took over the claim of {taken_over.describe()}', flush=True)
            print(f'{self.run.name}: {prepare(self.run, keep=[SLURM_DIR])}', flush=True)
        try:
            with distributed_session():
                return execute(self.run, launcher='pytorch')
        finally:
            if environment.global_rank == 0:
                run_dir.release()


@dataclass
class RunState:
    """A run's state: 'done', 'pending', 'running', 'requeued', 'blocked' (behind a failed
    upstream job), 'failed' or 'not submitted'."""
    run: PlannedRun
    state: str
    job_id: Optional[str] = None
    iteration: Optional[int] = None
    log: Optional[Path] = None
    detail: str = ''

    @property
    def queued(self) -> bool:
        return self.state in ('pending', 'running', 'requeued')

    def line(self) -> str:
        parts = [f'{self.state:<13}', f'job {self.job_id or "-":<8}',
                 f'iter {self.iteration if self.iteration is not None else "-":<7}', self.run.name]
        if self.log:
            parts.append(f'log {self.log}')
        if self.detail:
            parts.append(f'({self.detail})')
        return ' '.join(map(str, parts))


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


def scheduler_view(job_id: str) -> Optional[Dict[str, str]]:
    """scontrol's fields of a job (JobState, Reason, Restarts, ...), or None once Slurm has
    forgotten it."""
    proc = subprocess.run(['scontrol', 'show', 'job', '-o', job_id], capture_output=True,
                          text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    return dict(re.findall(r'(\w+)=(\S*)', proc.stdout))


def _result(run: PlannedRun, job_id: str) -> Optional[str]:
    """'success', the error's last line, or None: what submitit recorded when the job ended."""
    path = job_paths(run.work_dir, job_id).result_pickle
    if not path.is_file():
        return None
    try:
        with open(path, 'rb') as f:
            outcome, value = pickle.load(f)  # written by our own job, in our own work dir
    except Exception:
        return None
    return 'success' if outcome == 'success' else str(value).strip().splitlines()[-1]


def run_state(run: PlannedRun) -> RunState:
    """The state of ``run`` from its work dir and the scheduler."""
    ids = job_ids(run)
    job = ids[-1] if ids else None
    run_dir = RunDir(run.work_dir)
    log = job_paths(run.work_dir, job).stdout if job else None
    state = RunState(run, 'not submitted', job, run_dir.iteration_reached(), log)
    if run_dir.finished:
        state.state = 'done'
        return state
    if job is None:
        return state
    view = scheduler_view(job)
    if view is not None:
        slurm_state, restarts = view.get('JobState', '?'), int(view.get('Restarts', '0') or 0)
        if slurm_state in PENDING_STATES and view.get('Reason') == NEVER:
            state.state, state.detail = 'blocked', 'its upstream job failed'
        elif slurm_state in PENDING_STATES | RUNNING_STATES:
            state.state = ('requeued' if restarts else
                           'running' if slurm_state in RUNNING_STATES else 'pending')
            if restarts:
                state.detail = f'restart {restarts}, {slurm_state.lower()}'
        else:
            state.state = 'failed'
            state.detail = f'Slurm: {slurm_state}'
    else:
        state.state = 'failed'
    if state.state == 'failed':
        result = _result(run, job)
        if result and result != 'success':
            state.detail = (state.detail + '; ' if state.detail else '') + result
    return state


def _sbatch_flags(params: dict) -> str:
    """submitit's parameters as the sbatch options they become (submitit sets the requeue
    signal: ``signal_delay_s`` before the time limit)."""
    flags = {k: v for k, v in params.items()
             if k not in ('additional_parameters', 'signal_delay_s')}
    flags['signal'] = f'{SlurmJobEnvironment.USR_SIG}@{params["signal_delay_s"]}'
    flags.update(params.get('additional_parameters') or {})
    return ' '.join(f'--{k.replace("_", "-")}={v}' for k, v in flags.items())


def _count(states: Sequence[RunState]) -> str:
    return ', '.join(f'{n} {s}' for s, n in sorted(Counter(s.state for s in states).items()))


class SlurmExecutor(Executor):
    """Every unfinished run a Slurm job, submitted at once; fine-tuning jobs wait for their
    pretraining job (``afterok``). With ``wait``, blocks until no job is queued."""

    def __init__(self, resources: SlurmResources, wait: bool = False,
                 poll_s: float = 30.0) -> None:
        self.resources, self.wait_for_jobs, self.poll_s = resources, wait, poll_s

    def _executor(self, run: PlannedRun, dependency: Optional[str]) -> submitit.SlurmExecutor:
        executor = submitit.SlurmExecutor(folder=run.work_dir / SLURM_DIR,
                                          max_num_timeout=self.resources.max_requeues)
        executor.update_parameters(**self.resources.sbatch_parameters(run, dependency))
        return executor

    def describe(self, plan: Plan, run: PlannedRun) -> str:
        upstream = plan.waits_for(run)
        dependency = None
        if upstream is not None and not RunDir(upstream.work_dir).finished:
            dependency = f'afterok:<job of {upstream.name}>'
        return f'{run.name}: sbatch {_sbatch_flags(self.resources.sbatch_parameters(run, dependency))}'

    def dry_run(self, plan: Plan, console: Console) -> None:
        for run in plan.runs:
            state = run_state(run)
            if state.state != 'done' and not state.queued:
                console.line(f'[{state.state}] {self.describe(plan, run)}')

    def submit(self, plan: Plan, console: Console) -> List[RunState]:
        """Submit every run that is neither finished nor queued; returns the runs' states
        afterwards."""
        require_slurm()
        states: Dict[str, RunState] = {}
        jobs: Dict[str, str] = {}      # run name -> the job that will finish it
        resubmitted = set()
        for run in plan.runs:
            state = run_state(run)
            states[run.name] = state
            upstream = plan.waits_for(run)
            waits_on_new_job = upstream is not None and upstream.name in resubmitted
            if state.state == 'done' or (state.queued and not
                                         (waits_on_new_job and state.state == 'pending')):
                if state.queued:
                    jobs[run.name] = state.job_id
                continue
            if upstream is not None and states[upstream.name].state in ('failed', 'blocked') \
                    and upstream.name not in resubmitted:
                continue  # its upstream run could not be submitted
            dependency = None
            if upstream is not None and states[upstream.name].state != 'done':
                dependency = f'afterok:{jobs[upstream.name]}'
            resubmitted.add(run.name)
            if state.queued or state.state == 'blocked':
                subprocess.run(['scancel', state.job_id], check=False)  # waits on a failed job
            job = self._executor(run, dependency).submit(
                SlurmJob(run, self.resources.max_requeues))
            jobs[run.name] = job.job_id
            console.line(f'submitted {run.name}: job {job.job_id}'
                         + (f' ({dependency})' if dependency else ''))
            states[run.name] = RunState(run, 'pending', job.job_id, state.iteration,
                                        job_paths(run.work_dir, job.job_id).stdout)
        done = sum(s.state == 'done' for s in states.values())
        queued = sum(s.queued for s in states.values()) - len(resubmitted)
        console.line(f'{len(resubmitted)} job{"s" * (len(resubmitted) != 1)} submitted; '
                     f'{done} run{"s" * (done != 1)} already done, {queued} already queued')
        return [states[r.name] for r in plan.runs]

    def carry_out(self, plan: Plan, console: Console) -> Optional[List[str]]:
        self.submit(plan, console)
        if not self.wait_for_jobs:
            return None
        states = self.wait(plan, console)
        unfinished = [s for s in states if s.state != 'done']
        for state in unfinished:
            console.line(state.line())
        return [s.run.name for s in unfinished]

    def status(self, plan: Plan, console: Console) -> None:
        require_slurm()
        states = [run_state(run) for run in plan.runs]
        for state in states:
            console.line(state.line())
        console.line(_count(states))

    def wait(self, plan: Plan, console: Console) -> List[RunState]:
        """Block until no run is pending or running, printing a line whenever the counts
        change."""
        start, last = time.time(), None
        while True:
            states = [run_state(run) for run in plan.runs]
            summary = _count(states)
            if summary != last:
                console.line(f'[{clock(time.time() - start)}] {summary}')
                last = summary
            if not any(s.queued for s in states):
                return states
            time.sleep(self.poll_s)
