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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import submitit

from .console import Console, clock
from .job import done_record, execute, iteration_reached
from .plan import Plan, PlannedRun

SLURM_DIR = 'slurm'
JOB_FILE = re.compile(r'^(\d+)_submitted\.pkl$')
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
    """What a job runs (pickled by submitit): :func:`execute` for one run, in every task.

    ``checkpoint`` (submitit's hook for preemption and time limits) resubmits the same call:
    the work dir holds the progress, so the job resumes from its newest readable checkpoint.
    """

    def __init__(self, run: PlannedRun, max_requeues: int) -> None:
        self.run, self.max_requeues = run, max_requeues

    def __call__(self) -> dict:
        restarts = int(os.environ.get('SLURM_RESTART_COUNT', '0'))
        if restarts > self.max_requeues:
            raise RuntimeError(f'{self.run.name}: requeued {restarts} times, more than '
                               f'max_requeues={self.max_requeues}; not going on')
        # one rendezvous port per job, so that jobs sharing a node do not collide
        job_id = int(os.environ.get('SLURM_ARRAY_JOB_ID') or os.environ['SLURM_JOB_ID'])
        os.environ.setdefault('MASTER_PORT', str(20000 + job_id % 20000))
        import torch
        if not torch.cuda.is_available() and os.environ.get('SLURM_CPUS_PER_TASK'):
            # the CPUs the job was given, not every core of the node (the thread count changes
            # the rounding, so the local executor's --threads gives the same numbers)
            torch.set_num_threads(int(os.environ['SLURM_CPUS_PER_TASK']))
        print(f'{self.run.name}: Slurm job {job_id}, restart {restarts}', flush=True)
        return execute(self.run, launcher='slurm')


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
    ids = [m.group(1) for m in map(JOB_FILE.match, os.listdir(folder)) if m]
    return sorted(ids, key=int)


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
    path = run.work_dir / SLURM_DIR / f'{job_id}_0_result.pkl'
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
    log = run.work_dir / SLURM_DIR / f'{job}_0_log.out' if job else None
    state = RunState(run, 'not submitted', job, iteration_reached(run.work_dir), log)
    if done_record(run.work_dir) is not None:
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


def _executor(run: PlannedRun, resources: SlurmResources, dependency: Optional[str]):
    executor = submitit.SlurmExecutor(folder=run.work_dir / SLURM_DIR,
                                      max_num_timeout=resources.max_requeues)
    executor.update_parameters(**resources.sbatch_parameters(run, dependency))
    return executor


def _sbatch_flags(params: dict) -> str:
    """submitit's parameters as the sbatch options they become."""
    flags = {k: v for k, v in params.items()
             if k not in ('additional_parameters', 'signal_delay_s')}
    flags['signal'] = f'{submitit.JobEnvironment._usr_sig().name.replace("SIG", "")}@' \
                      f'{params["signal_delay_s"]}'
    flags.update(params.get('additional_parameters') or {})
    return ' '.join(f'--{k.replace("_", "-")}={v}' for k, v in flags.items())


def submit(plan: Plan, resources: SlurmResources, console: Console,
           dry_run: bool = False) -> List[RunState]:
    """Submit every run that is neither finished nor queued (with ``dry_run``, print what would
    be submitted instead); returns the runs' states afterwards."""
    require_slurm()
    states: Dict[str, RunState] = {}
    jobs: Dict[str, str] = {}      # run name -> the job that will finish it
    resubmitted = set()
    for run in plan.runs:
        state = run_state(run)
        states[run.name] = state
        upstream = plan.upstream_of(run)
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
        params = resources.sbatch_parameters(run, dependency)
        resubmitted.add(run.name)
        if dry_run:
            console.line(f'[{state.state}] {run.name}: sbatch {_sbatch_flags(params)}')
            jobs[run.name] = f'<job of {run.name}>'
            continue
        if state.queued or state.state == 'blocked':
            subprocess.run(['scancel', state.job_id], check=False)  # waits on a job that failed
        job = _executor(run, resources, dependency).submit(SlurmJob(run, resources.max_requeues))
        jobs[run.name] = job.job_id
        console.line(f'submitted {run.name}: job {job.job_id}'
                     + (f' ({dependency})' if dependency else ''))
        states[run.name] = RunState(run, 'pending', job.job_id, state.iteration,
                                    run.work_dir / SLURM_DIR / f'{job.job_id}_0_log.out')
    if not dry_run:
        done = sum(s.state == 'done' for s in states.values())
        queued = sum(s.queued for s in states.values()) - len(resubmitted)
        console.line(f'{len(resubmitted)} job{"s" * (len(resubmitted) != 1)} submitted; '
                     f'{done} run{"s" * (done != 1)} already done, {queued} already queued')
    return [states[r.name] for r in plan.runs]


def status(plan: Plan) -> List[RunState]:
    require_slurm()
    return [run_state(run) for run in plan.runs]


def print_status(states: Sequence[RunState], console: Console) -> None:
    for state in states:
        console.line(state.line())
    counts = {}
    for state in states:
        counts[state.state] = counts.get(state.state, 0) + 1
    console.line(', '.join(f'{n} {s}' for s, n in sorted(counts.items())))


def wait(plan: Plan, console: Console, poll_s: float = 10.0) -> List[RunState]:
    """Block until no run is pending or running, printing a line whenever the counts change."""
    start, last = time.time(), None
    while True:
        states = status(plan)
        counts = {}
        for state in states:
            counts[state.state] = counts.get(state.state, 0) + 1
        summary = ', '.join(f'{n} {s}' for s, n in sorted(counts.items()))
        if summary != last:
            console.line(f'[{clock(time.time() - start)}] {summary}')
            last = summary
        if not any(s.queued for s in states):
            return states
        time.sleep(poll_s)
