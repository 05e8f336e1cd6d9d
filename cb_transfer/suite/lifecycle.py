"""A run's lifecycle: its states, the one function that tells them, and the claim around its work.

A planned run is in one of the states of :class:`State`, and :func:`run_status` is the one
function that says which, from two sources only: the run's work dir (its record, its claim, its
checkpoints; :class:`cb_transfer.run_dir.RunDir`) and, where there is one, what the executor
knows of the run's latest start (a :class:`Job`: a worker process, a torchrun launch, a Slurm
job). Who moves a run between the states (docs/design.md, "The run lifecycle"):

- ``new`` / ``resumable`` -> ``queued`` or ``running``: the loop starts it
  (:func:`cb_transfer.suite.loop.carry_out`) through an executor;
- ``running`` -> ``done``: its work writes the record (:func:`cb_transfer.suite.job.record_run`);
- ``running`` -> ``failed``: the work raised, the process died, Slurm ended the job;
- any unfinished state -> ``blocked``: the run it starts from failed in this invocation (or,
  on Slurm, its job waits on a failed job);
- ``held``: another live process (a second invocation, a Slurm job) claimed it; the loop waits.

Slurm's own job states are read in one place, :func:`slurm_job`, and mapped to three phases by
one table, :data:`SLURM_PHASES`; the claim's staleness check
(:meth:`cb_transfer.run_dir.Claim.is_stale`) and the Slurm executor both read them through it.
"""
import contextlib
import enum
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

from ..run_dir import RunDir
from .plan import PlannedRun, Stage


class State(enum.Enum):
    """The states of a planned run."""
    NEW = 'new'               # nothing done yet (or nothing worth resuming from)
    RESUMABLE = 'resumable'   # an earlier start left a checkpoint (or evaluations) to go on from
    HELD = 'held'             # claimed by another live process
    QUEUED = 'queued'         # started, waiting for resources (a Slurm job pending)
    RUNNING = 'running'
    DONE = 'done'             # its record is written: the one notion of finished
    FAILED = 'failed'         # its latest start ended without a record
    BLOCKED = 'blocked'       # the run it starts from failed

    @property
    def live(self) -> bool:
        """Someone is working on the run (here or elsewhere)."""
        return self in (State.HELD, State.QUEUED, State.RUNNING)


class Phase(enum.Enum):
    """Where a job stands, in the terms of every executor."""
    QUEUED = 'queued'
    RUNNING = 'running'
    ENDED = 'ended'


# Every job state Slurm documents (squeue(1), "JOB STATE CODES"), by phase. A state not here (a
# newer Slurm's) counts as queued: never taken for over, so never run twice.
SLURM_PHASES = {
    **dict.fromkeys(('PENDING', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED', 'RESV_DEL_HOLD',
                     'SPECIAL_EXIT'), Phase.QUEUED),
    **dict.fromkeys(('CONFIGURING', 'RUNNING', 'COMPLETING', 'STAGE_OUT', 'SIGNALING',
                     'RESIZING', 'SUSPENDED', 'STOPPED'), Phase.RUNNING),
    **dict.fromkeys(('COMPLETED', 'CANCELLED', 'FAILED', 'TIMEOUT', 'NODE_FAIL', 'PREEMPTED',
                     'BOOT_FAIL', 'DEADLINE', 'OUT_OF_MEMORY', 'REVOKED'), Phase.ENDED),
}
# scontrol's reason for a job whose dependency can never be met (its upstream job failed)
NEVER = 'DependencyNeverSatisfied'


@dataclass(frozen=True)
class Job:
    """What an executor knows of a run's latest start.

    Attributes:
        phase: Queued, running or ended.
        id: The executor's name for it (a Slurm job id), where it has one.
        blocked: Queued behind a dependency that can never be met.
        detail: Words for the user (Slurm's state and restarts, the error it ended with).
        log: Where the start's output goes.
    """
    phase: Phase
    id: Optional[str] = None
    blocked: bool = False
    detail: str = ''
    log: Optional[Path] = None


def slurm_phase(state: str) -> Phase:
    """The phase of a Slurm job state (``scontrol``'s ``JobState``)."""
    return SLURM_PHASES.get(state, Phase.QUEUED)


def slurm_job(job_id: str) -> Job:
    """Slurm's view of a job (``scontrol show job``), in the terms of :class:`Job`. A job Slurm
    has forgotten (``MinJobAge`` after it ended) is ended.

    Why not submitit's ``Job.state``: it asks ``sacct``, which needs Slurm's accounting database;
    ``scontrol`` answers on every cluster while the job is known.
    """
    proc = subprocess.run(['scontrol', 'show', 'job', '-o', job_id], capture_output=True,
                          text=True)
    fields = dict(re.findall(r'(\w+)=(\S*)', proc.stdout)) if proc.returncode == 0 else {}
    if not fields.get('JobState'):
        return Job(Phase.ENDED, job_id, detail='Slurm: no longer knows the job')
    state, restarts = fields['JobState'], int(fields.get('Restarts') or 0)
    phase = slurm_phase(state)
    detail = f'Slurm: {state}' if phase is Phase.ENDED else (
        f'restart {restarts}, {state.lower()}' if restarts else '')
    return Job(phase, job_id, blocked=phase is Phase.QUEUED and fields.get('Reason') == NEVER,
               detail=detail)


@dataclass(frozen=True)
class Status:
    """A run's state and what goes with it."""
    name: str
    state: State
    detail: str = ''
    job: Optional[Job] = None

    def line(self, iteration: Optional[int] = None) -> str:
        """One line for a status listing (with the last training step logged, where given)."""
        job = self.job.id if self.job and self.job.id else '-'
        parts = [f'{self.state.value:<10}', f'job {job:<8}',
                 f'iter {iteration if iteration is not None else "-":<7}', self.name]
        if self.job and self.job.log:
            parts.append(f'log {self.job.log}')
        if self.detail:
            parts.append(f'({self.detail})')
        return ' '.join(parts)


def run_status(run: PlannedRun, job: Optional[Job] = None,
               upstream_failed: bool = False) -> Status:
    """The state of one run, from its work dir and the executor's view of its latest start.

    Args:
        run: The planned run.
        job: What the executor knows of the run's latest start; None when it knows of none.
        upstream_failed: The run it starts from failed (and will not be started again).
    """
    run_dir = RunDir(run.work_dir)
    if run_dir.done:
        return Status(run.name, State.DONE, job=job)
    if job is not None:
        if job.phase is Phase.ENDED:
            return Status(run.name, State.FAILED, job.detail, job)
        if job.blocked:
            return Status(run.name, State.BLOCKED, 'its upstream job failed', job)
        return Status(run.name, State.RUNNING if job.phase is Phase.RUNNING else State.QUEUED,
                      job.detail, job)
    holder = run_dir.holder()
    if holder is not None and not holder.is_stale():
        return Status(run.name, State.HELD, f'by {holder.describe()}')
    if upstream_failed:
        return Status(run.name, State.BLOCKED, 'its upstream run failed')
    return Status(run.name, State.RESUMABLE if _progress(run) else State.NEW)


def _progress(run: PlannedRun) -> int:
    """What an earlier start left to go on from: a training run's checkpoints (whether one
    reads back whole is :func:`prepare`'s to find out, once the run is claimed), a robustness
    evaluation's evaluations done; 0 for nothing."""
    if run.stage is Stage.ROBUSTNESS:
        from ..robustness.evaluate import read_results
        return len(read_results(run.work_dir))
    return len(RunDir(run.work_dir).checkpoints())


def prepare(run: PlannedRun, keep: Sequence[str] = ()) -> str:
    """Ready a claimed run's work dir: move aside an attempt that left nothing to go on from
    (its logs kept; ``keep`` as :meth:`RunDir.move_aside`); returns where the run starts (and
    why a newer checkpoint was passed over). A training run resumes from its newest readable
    checkpoint, a robustness evaluation after the evaluations it finished."""
    run_dir = RunDir(run.work_dir)
    if run.stage is Stage.ROBUSTNESS:
        from ..robustness.evaluate import RESULTS, evaluations
        done = _progress(run)
        if done:
            total = len(evaluations(run.corruptions, run.severities))
            return f'resuming after {done} of {total} evaluations'
        moved = run_dir.move_aside([*keep, RESULTS])
        return 'starting' + (f' afresh (the earlier attempt moved to {moved})' if moved else '')
    checkpoint, skipped = run_dir.resumable_checkpoint()
    note = f'resuming from {checkpoint.name}' if checkpoint else 'starting'
    if checkpoint is None:
        moved = run_dir.move_aside(keep)
        if moved is not None:
            note += f' afresh (the earlier attempt, which left no checkpoint, moved to {moved})'
    if skipped:
        note += ' (' + '; '.join(skipped) + ')'
    return note


@contextlib.contextmanager
def claimed(run: PlannedRun, keep: Sequence[str] = ()) -> Iterator[str]:
    """Claim a run for this process, prepare its work dir (:func:`prepare`), and release the
    claim when the block ends, however it ends: the one claim, prepare, release sequence, the
    same in every executor (around the run's work, in the process that does it).

    Yields:
        Where the run starts, in words (and whose stale claim it took over).

    Raises:
        cb_transfer.run_dir.RunHeld: another live process holds the run.
    """
    run_dir = RunDir(run.work_dir)
    taken_over = run_dir.claim()
    try:
        note = prepare(run, keep)
        if taken_over is not None:
            note += (f'; took over the claim of {taken_over.describe()}, which is no longer '
                     'running')
        yield note
    finally:
        run_dir.release()
