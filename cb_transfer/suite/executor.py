"""What every executor is: the plan decides what runs, an executor only carries runs out.

Three executors implement :class:`Executor`: :class:`~.local.LocalExecutor` (this machine, in this
process or worker processes), :class:`~.torchrun.TorchrunExecutor` (each run through torchrun) and
:class:`~.slurm.SlurmExecutor` (each run a Slurm job, through submitit). Each run's work is the
same function in all of them (:func:`cb_transfer.suite.job.execute`); a run's state is read from
its work dir (:class:`cb_transfer.run_dir.RunDir`), never from a list an executor keeps.
"""
import abc
from collections import Counter
from typing import List, Optional, Sequence

from ..run_dir import RunDir
from .console import Console
from .plan import Plan, PlannedRun


def run_state(run: PlannedRun) -> str:
    """'done', 'held by <holder>', 'resume from <checkpoint>' or 'new', from the work dir."""
    run_dir = RunDir(run.work_dir)
    if run_dir.finished:
        return 'done'
    holder = run_dir.holder()
    if holder is not None and not holder.is_stale():
        return f'held by {holder.describe()}'
    checkpoint, _ = run_dir.resumable_checkpoint()
    return f'resume from {checkpoint.name}' if checkpoint else 'new'


def prepare(run: PlannedRun, keep: Sequence[str] = ()) -> str:
    """Before a claimed run starts: move aside an attempt that left nothing to resume from (its
    logs kept; ``keep`` as :meth:`RunDir.move_aside`); returns where the run starts (and why a
    newer checkpoint was passed over). A training run resumes from its newest readable
    checkpoint, a robustness evaluation from the evaluations it finished."""
    run_dir = RunDir(run.work_dir)
    if run.stage == 'robustness':
        from ..robustness.evaluate import RESULTS, evaluations, read_results
        done = len(read_results(run.work_dir))
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


class Executor(abc.ABC):
    """Carries out the runs of a plan; each subclass says how."""

    @abc.abstractmethod
    def describe(self, plan: Plan, run: PlannedRun) -> str:
        """What this executor would do for ``run`` (the dry run's line)."""

    @abc.abstractmethod
    def carry_out(self, plan: Plan, console: Console) -> Optional[List[str]]:
        """Carry out every unfinished run, each after the run it starts from.

        Returns:
            The names of the runs that did not finish; None when the runs were handed to a
            scheduler and not waited for.
        """

    def dry_run(self, plan: Plan, console: Console) -> None:
        """One line per run: its state and what would be done; nothing is touched."""
        for run in plan.runs:
            console.line(f'[{run_state(run)}] {self.describe(plan, run)}')

    def status(self, plan: Plan, console: Console) -> None:
        """One line per run and a count by state."""
        states = [(run, run_state(run)) for run in plan.runs]
        for run, state in states:
            console.line(f'{state:<13} {run.name}')
        counts = Counter(state.split(' ')[0] for _, state in states)
        console.line(', '.join(f'{n} {s}' for s, n in sorted(counts.items())))
