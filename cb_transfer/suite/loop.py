"""The one scheduling loop of a suite, and what an executor is.

The plan says what runs; :func:`carry_out` starts each unfinished run once the run it starts
from is done (or, for an executor that can chain, once that run is started), claims it for the
process that answers for it (:func:`~.lifecycle.claimed`), skips the runs whose upstream run
failed, waits for runs held by another invocation, shows progress, and ends with a summary. Run
states come from :func:`~.lifecycle.run_status` alone, never from a list the loop keeps.

An :class:`Executor` implements only how to start a run and how to learn where it stands:

- :class:`~.local.LocalExecutor`: a pool of worker processes on this machine;
- :class:`~.torchrun.TorchrunExecutor`: a torchrun subprocess per run;
- :class:`~.slurm.SlurmExecutor`: a submitit job per run.

Each does the same work per run (:func:`cb_transfer.suite.job.execute`).
"""
import abc
import contextlib
import time
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ..run_dir import RunDir, RunHeld
from .console import Console, clock
from .lifecycle import Job, State, Status, claimed, run_status
from .plan import Plan, PlannedRun

SUMMARY_METRICS = ('accuracy/top1', 'mIoU', 'coco/bbox_mAP', 'coco/segm_mAP')


class Executor(abc.ABC):
    """How runs are started and how their end is learnt.

    Attributes:
        slots: Runs started at a time (None: no limit; the scheduler queues them).
        chains: Starts a run while the run it starts from is still queued or running (a Slurm
            job with an ``afterok`` dependency); otherwise only once that run is done.
        waits: :func:`carry_out` waits until no started run is queued or running; otherwise it
            returns once everything that can start has started.
        claims_here: The loop claims each run for this process while it runs (the work runs
            under this process); otherwise the run's own process claims it (a Slurm job).
        started_words: How the summary counts starts (``('job', 'submitted')``).
    """
    slots: Optional[int] = 1
    chains = False
    waits = True
    claims_here = True
    started_words = ('run', 'started')

    @abc.abstractmethod
    def describe(self, plan: Plan, run: PlannedRun) -> str:
        """What this executor would do for ``run`` (the dry run's line)."""

    @abc.abstractmethod
    def start(self, plan: Plan, run: PlannedRun, note: str,
              upstream: Optional[Job]) -> Tuple[Job, str]:
        """Start ``run`` (claimed and prepared where :attr:`claims_here`; ``note`` says where it
        starts); ``upstream``: the job of the run it starts from, where that is not done yet
        (only for an executor that :attr:`chains`). Returns the start and a line saying what
        was started."""

    @abc.abstractmethod
    def poll(self, run: PlannedRun) -> Optional[Job]:
        """What this executor knows of the latest start of ``run``; None: it knows of none."""

    poll_s: float = 0.5   # how often the loop looks at the runs

    def begin(self, todo: List[PlannedRun], console: Console) -> None:
        """Called once before the loop starts anything, with the runs to do."""

    def update(self, statuses: List[Status], console: Console) -> None:
        """Called after each pass of the loop with every run's state: show progress."""

    def wait(self, timeout: float) -> None:
        """Between passes of the loop: until a run may have ended, at most ``timeout``
        seconds."""
        time.sleep(timeout)

    def close(self) -> None:
        """Give back what the executor holds (worker processes) once the loop ends."""

    def status_line(self, run: PlannedRun, status: Status) -> str:
        """A run's line in the status listing."""
        return status.line()


@dataclass
class Outcome:
    """What :func:`carry_out` leaves: every run's state at the end, and whether it waited."""
    statuses: List[Status]
    waited: bool

    @property
    def unfinished(self) -> List[str]:
        return [s.name for s in self.statuses if s.state is not State.DONE]


def _summary(metrics: Dict[str, float]) -> str:
    shown = [f'{k} {metrics[k]:.3f}' for k in SUMMARY_METRICS if k in metrics]
    return ', '.join(shown) or 'no metric'


def _count(statuses: List[Status]) -> str:
    counts = Counter(s.state.value for s in statuses)
    return ', '.join(f'{n} {state}' for state, n in sorted(counts.items()))


def statuses(plan: Plan, executor: Executor, given_up=frozenset()) -> List[Status]:
    """Every run's state, in the plan's order (an upstream run before the runs it feeds); a run
    whose upstream run is in ``given_up`` (or blocked) is blocked."""
    found: Dict[str, Status] = {}
    for run in plan.runs:
        upstream = plan.waits_for(run)
        failed = upstream is not None and (upstream.name in given_up
                                           or found[upstream.name].state is State.BLOCKED)
        found[run.name] = _status(executor, run, failed)
    return list(found.values())


def _status(executor: Executor, run: PlannedRun, upstream_failed: bool) -> Status:
    finished = RunDir(run.work_dir).done   # a done run needs no word from the scheduler
    return run_status(run, None if finished else executor.poll(run), upstream_failed)


def dry_run(plan: Plan, executor: Executor, console: Console) -> None:
    """One line per run: its state and what the executor would do; nothing is touched."""
    for status, run in zip(statuses(plan, executor), plan.runs):
        console.line(f'[{status.state.value}] {executor.describe(plan, run)}')


def show_status(plan: Plan, executor: Executor, console: Console) -> None:
    """One line per run, and a count by state."""
    found = statuses(plan, executor)
    for status, run in zip(found, plan.runs):
        console.line(executor.status_line(run, status))
    console.line(_count(found))


class _Loop:
    """The state of one :func:`carry_out`: what this invocation started, gave up on, claimed
    and last said about each run."""

    def __init__(self, plan: Plan, executor: Executor, console: Console) -> None:
        self.plan, self.executor, self.console = plan, executor, console
        todo = [r for r in plan.runs if not RunDir(r.work_dir).done]
        self.todo = todo
        self.label = {r.name: f'[{i}/{len(todo)}] {r.name}' for i, r in enumerate(todo, 1)}
        self.started: Dict[str, float] = {}     # started by this invocation: when
        self.given_up: set = set()              # failed or skipped under this invocation
        self.seen_live: set = set()             # seen queued, running or held by it
        self.jobs: Dict[str, Job] = {}          # the last start seen of each run
        self.claims: Dict[str, contextlib.ExitStack] = {}
        self.said: Dict[str, State] = {}        # the state each run was last reported in
        self.found: Dict[str, Status] = {}      # this pass's states, so far

    def tag(self, run: PlannedRun) -> str:
        return self.label.get(run.name, run.name)

    def busy(self) -> int:
        return sum(1 for name in self.started
                   if name in self.found and self.found[name].state.live)

    def turn(self, run: PlannedRun) -> Status:
        """One run's turn in a pass: its state, a line where it changed, its start where it
        can start, its release or the end of it where it ended. A run this invocation saw
        queued, running or held and then saw fail is not started again."""
        upstream = self.plan.waits_for(run)
        up = self.found[upstream.name] if upstream is not None else None
        upstream_failed = upstream is not None and upstream.name in self.given_up
        status = _status(self.executor, run, upstream_failed)
        self.report(run, status)
        if status.job is not None:
            self.jobs[run.name] = status.job
        if status.state.live:
            self.seen_live.add(run.name)
        failed_here = run.name in self.seen_live and status.state in (State.FAILED,
                                                                       State.BLOCKED)
        if run.name not in self.started and not failed_here and \
                self.can_start(run, status, upstream, up):
            status = self.start(run, up.job if up is not None and up.state is not State.DONE
                                else None)
            if status.state.live:
                self.seen_live.add(run.name)
        if run.name in self.started and not status.state.live:
            if run.name in self.claims:
                self.claims.pop(run.name).close()
            if status.state is not State.DONE:
                self.given_up.add(run.name)
        elif failed_here or (status.state is State.BLOCKED and upstream_failed):
            self.given_up.add(run.name)
        return status

    def can_start(self, run: PlannedRun, status: Status, upstream: Optional[PlannedRun],
                  up: Optional[Status]) -> bool:
        startable = status.state in (State.NEW, State.RESUMABLE, State.FAILED) or (
            # a job queued behind a job that its upstream run, started again, no longer is
            status.state in (State.QUEUED, State.BLOCKED) and upstream is not None
            and upstream.name in self.started)
        ready = up is None or up.state is State.DONE or (
            self.executor.chains and up.state in (State.QUEUED, State.RUNNING)
            and up.job is not None)
        slots = self.executor.slots
        return startable and ready and (slots is None or self.busy() < slots)

    def start(self, run: PlannedRun, upstream: Optional[Job]) -> Status:
        """Claim ``run`` (where the executor runs the work under this process) and start it;
        held when another process holds it."""
        note, stack = '', contextlib.ExitStack()
        if self.executor.claims_here:
            try:
                note = stack.enter_context(claimed(run))
            except RunHeld as err:
                status = Status(run.name, State.HELD, f'by {err.holder.describe()}')
                self.report(run, status)
                return status
            self.claims[run.name] = stack
        self.started[run.name] = time.time()
        try:
            job, line = self.executor.start(self.plan, run, note, upstream)
        except Exception as err:  # the run's own failures are the executor's to report
            stack.close()
            self.claims.pop(run.name, None)
            self.given_up.add(run.name)
            self.console.line(f'{self.tag(run)}: FAILED to start ({type(err).__name__}: {err})')
            self.said[run.name] = State.FAILED
            return Status(run.name, State.FAILED, f'{type(err).__name__}: {err}')
        number = self.label.get(run.name, '').split(' ')[0]
        self.console.line(f'{number} {line}'.strip())
        self.said[run.name] = State.RUNNING   # what it ends in is reported, whenever it ends
        status = run_status(run, job)
        self.report(run, status)
        return status

    def report(self, run: PlannedRun, status: Status) -> None:
        """A line where a run's state changed; on first sight only a held run's."""
        before, state = self.said.get(run.name), status.state
        if state is before:
            return
        self.said[run.name] = state
        since = self.started.get(run.name)
        if state is State.HELD:
            self.console.line(f'{self.tag(run)}: held {status.detail}; waiting for it')
        elif before is None:
            return
        elif state is State.DONE:
            record = RunDir(run.work_dir).record
            how = (f' in {clock(time.time() - since)}' if since is not None else
                   f' (job {self.jobs[run.name].id})' if run.name in self.jobs
                   and self.jobs[run.name].id else
                   ' by another invocation on this work dir')
            self.console.line(f'{self.tag(run)}: done{how}, {_summary(record.metrics)}')
        elif state is State.FAILED:
            log = f'; log: {status.job.log}' if status.job and status.job.log else ''
            self.console.line(f'{self.tag(run)}: FAILED ({status.detail}){log}')
        elif state is State.BLOCKED:
            self.console.line(f'{self.tag(run)}: skipped, {status.detail}')


def carry_out(plan: Plan, executor: Executor, console: Console) -> Outcome:
    """Carry out every unfinished run of ``plan``, each after the run it starts from (see the
    module's docstring). A run that fails is reported with its log and the error, and the runs
    that start from it are skipped; the others go on. A run that failed before this invocation
    is started again; one that fails under it is not.

    Returns:
        Every run's state at the end (with ``waited`` False where the executor handed the runs
        to a scheduler and did not wait for them).
    """
    loop = _Loop(plan, executor, console)
    first: Optional[Dict[str, State]] = None
    if loop.todo:
        executor.begin(loop.todo, console)
    quiet = False   # the last pass started nothing and left nothing live
    try:
        while True:
            loop.found, starts = {}, len(loop.started)
            for run in plan.runs:
                loop.found[run.name] = loop.turn(run)
            found = list(loop.found.values())
            if first is None:
                first = {s.name: s.state for s in found}
            executor.update(found, console)
            was_quiet = quiet
            quiet = len(loop.started) == starts and not any(s.state.live for s in found)
            pending = any(s.state is not State.DONE and s.name not in loop.given_up
                          for s in found)
            # a run that ended late in a pass may free what an earlier one waits for: another
            # pass, unless nothing is left
            if not executor.waits or (quiet and (was_quiet or not pending)):
                break
            executor.wait(executor.poll_s)
    finally:
        for stack in loop.claims.values():
            stack.close()
        executor.close()
    noun, verb = executor.started_words
    count = len(loop.started)
    done = sum(state is State.DONE for name, state in first.items() if name not in loop.started)
    queued = sum(state in (State.QUEUED, State.RUNNING) for name, state in first.items()
                 if name not in loop.started)
    console.line(f'{count} {noun}{"s" * (count != 1)} {verb}; {done} run{"s" * (done != 1)} '
                 f'already done, {queued} already queued')
    if executor.waits:
        console.line(f'at the end: {_count(found)}')
    return Outcome(found, executor.waits)
