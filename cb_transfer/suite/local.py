"""The local executor (the embedded default): the unfinished runs on this machine, up to ``jobs`` at
a time, each in a worker process with ``threads`` CPU threads (with ``jobs=1``, in this process).

Each run goes through :func:`cb_transfer.suite.job.execute`, the same work a Slurm job does, and
starts once the upstream run it depends on has finished. On a small CPU two single-threaded runs
side by side do more work than one run on both cores (the small models of the smoke suite use
threads poorly, and Python's own work runs in parallel), so by default a CPU machine runs as
many runs as it has cores, up to two, one thread each. The same seed and thread count give the
same numbers; another thread count gives other rounding, so other numbers.

The console shows the suite's own lines; each run's output (mmengine's log, library warnings,
pycocotools' tables) goes to ``<run work dir>/suite_run.log`` unless ``verbose``.

Why not submitit's ``AutoExecutor(cluster='local')``: it starts a fresh interpreter per run and
reports nothing until the run ends, where this executor's workers stay warm (a run's imports and
Runner start cost seconds) and stream each run's progress to one console line.
"""
import contextlib
import functools
import json
import math
import multiprocessing
import os
import queue
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Dict, List, Optional

from mmengine.hooks import Hook

from ..run_dir import RunDir, RunHeld
from .console import Console, capture_output, clock
from .executor import Executor, prepare
from .job import execute
from .plan import Plan, PlannedRun

RUN_LOG = 'suite_run.log'
SUMMARY_METRICS = ('accuracy/top1', 'mIoU', 'coco/bbox_mAP', 'coco/segm_mAP')
_progress: Optional[multiprocessing.Queue] = None  # a worker's line to the main process


def default_jobs() -> int:
    """Runs at a time: one per GPU device with CUDA (torch sees one by default), else one per
    core, at most two."""
    import torch
    return 1 if torch.cuda.is_available() else max(1, min(2, os.cpu_count() or 1))


@functools.lru_cache(maxsize=None)
def _schedule_length(config: str, options: str) -> int:
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    if options != '{}':
        cfg.merge_from_dict(json.loads(options))
    return int(cfg.train_cfg.get('max_iters') or cfg.train_cfg.get('max_epochs') or 1)


def max_iters(run: PlannedRun) -> int:
    """The iterations the run's config trains for, with the suite's options (for an
    epoch-based config its epochs: a first guess, which the run corrects once it starts); for a
    robustness evaluation, its evaluations."""
    if run.stage == 'robustness':
        return 1 + len(run.corruptions) * len(run.severities)
    return _schedule_length(run.config, json.dumps(run.options, sort_keys=True))


def _summary(metrics: Dict[str, float]) -> str:
    shown = [f'{k} {metrics[k]:.3f}' for k in SUMMARY_METRICS if k in metrics]
    return ', '.join(shown) or 'no metric'


class _ReportProgress(Hook):
    """In a worker: sends (run, iteration, max, loss, last metric) to the main process; for a
    robustness evaluation, (run, evaluations done, evaluations, nan, last metric)."""

    priority = 'LOW'

    def __init__(self, name: str, evaluations: int = 0) -> None:
        self.name, self.loss, self.metric = name, float('nan'), ''
        self.evaluations, self.evaluated = evaluations, 0

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if outputs and 'loss' in outputs:
            self.loss = float(outputs['loss'].detach())
        _progress.put((self.name, runner.iter + 1, runner.max_iters, self.loss, self.metric))

    def after_val_epoch(self, runner, metrics=None) -> None:
        if metrics:
            key = next((k for k in SUMMARY_METRICS if k in metrics), next(iter(metrics)))
            self.metric = f', {key} {float(metrics[key]):.3f}'

    def after_test_epoch(self, runner, metrics=None) -> None:
        if self.evaluations:  # one robustness evaluation done
            self.evaluated += 1
            self.after_val_epoch(runner, metrics)
            _progress.put((self.name, self.evaluated, self.evaluations, self.loss, self.metric))


def _start_worker(progress, threads: int) -> None:
    """Where a worker's runs report progress, and how many CPU threads they use."""
    global _progress
    _progress = progress
    import torch
    torch.set_num_threads(threads)


class _ShowAtOnce:
    """Progress of a run in this process: straight to the board."""

    def __init__(self, board: '_Board') -> None:
        self.board = board

    def put(self, message: tuple) -> None:
        self.board.show(*message)


class _InThisProcess:
    """A pool of one, in this process (``jobs=1``): ``submit`` runs the run now."""

    def __init__(self, progress: _ShowAtOnce, threads: int) -> None:
        _start_worker(progress, threads)

    def submit(self, fn, *args) -> Future:
        future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as err:
            future.set_exception(err)
        return future

    def __enter__(self) -> '_InThisProcess':
        return self

    def __exit__(self, *exc) -> None:
        return None


def _work(run: PlannedRun, verbose: bool):
    """A worker's job: one run, its output in the run's log."""
    log = run.work_dir / RUN_LOG
    with contextlib.nullcontext() if verbose else capture_output(log):
        try:
            evaluations = max_iters(run) if run.stage == 'robustness' else 0
            return execute(run, hooks=[_ReportProgress(run.name, evaluations)])
        except BaseException:
            traceback.print_exc()  # into the run's log
            raise


class _Board:
    """The console's view of the runs in progress: one line, updated in place on a terminal."""

    def __init__(self, console: Console, expected: Dict[str, int]) -> None:
        self.console = console
        self.expected = dict(expected)       # name -> iterations, corrected as runs report
        self.start = time.time()
        self.runs: Dict[str, tuple] = {}     # name -> (label, start time)
        self.state: Dict[str, tuple] = {}    # name -> (iteration, of, loss, metric)
        self.finished_iters = 0

    def begin(self, name: str, label: str) -> None:
        self.runs[name] = (label, time.time())

    def end(self, name: str) -> None:
        self.runs.pop(name, None)
        self.state.pop(name, None)
        self.finished_iters += self.expected[name]

    def show(self, name: str, it: int, of: int, loss: float, metric: str) -> None:
        """A run's progress; the suite's time left comes from the iterations done so far, all
        runs together (which counts the runs going on side by side)."""
        self.state[name] = (it, of, loss, metric)
        self.expected[name] = of
        now = time.time()
        done = self.finished_iters + sum(s[0] for s in self.state.values())
        parts = []
        for run, (i, n, loss_, metric_) in self.state.items():
            label, start = self.runs.get(run, (run, now))
            step = (f'evaluation {i}/{n}' if math.isnan(loss_)  # a robustness evaluation
                    else f'iter {i}/{n} loss {loss_:.3f}')
            parts.append(f'{label}: {step}{metric_}, run left '
                         f'{clock((now - start) / max(i, 1) * (n - i))}')
        suite_left = (now - self.start) / max(done, 1) * (sum(self.expected.values()) - done)
        self.console.update(' | '.join(parts) + f' | suite left ~{clock(suite_left)}',
                            force=it == of)


class LocalExecutor(Executor):
    """The unfinished runs on this machine, ``jobs`` at a time (see the module's docstring).

    Each run is claimed before it starts (:meth:`cb_transfer.run_dir.RunDir.claim`); a run held
    by another live process (a second invocation on the same work dir, a Slurm job) is waited
    for, and the runs that start from it wait with it.
    """

    def __init__(self, jobs: Optional[int] = None, threads: Optional[int] = None,
                 verbose: bool = False) -> None:
        self.jobs = jobs or default_jobs()
        self.threads = threads or max(1, (os.cpu_count() or 1) // self.jobs)
        self.verbose = verbose

    def describe(self, plan: Plan, run: PlannedRun) -> str:
        weights = f' from {run.weights.describe()}' if run.weights else ''
        return (f'{run.name}: train and test {run.config_name} (seed {run.seed}){weights} in '
                f'{"this process" if self.jobs == 1 else "a worker process"}, '
                f'{self.threads} thread{"s" * (self.threads > 1)}')

    def carry_out(self, plan: Plan, console: Console) -> List[str]:
        return run_local(plan, console, self.jobs, self.threads, self.verbose)


def run_local(plan: Plan, console: Console, jobs: int, threads: int,
              verbose: bool = False) -> List[str]:
    """Run every unfinished run of ``plan`` on this machine, each after the run it starts from.
    A run that fails is reported with its log and the error, and the runs that start from it are
    skipped; the others go on.

    Returns:
        The names of the runs that failed or could not start.
    """
    todo = [r for r in plan.runs if not RunDir(r.work_dir).finished]
    if not todo:
        return []
    board = _Board(console, {r.name: max_iters(r) for r in todo})
    console.line(f'{len(todo)} run{"s" * (len(todo) != 1)} to go, {jobs} at a time, '
                 f'{threads} thread{"s" * (threads > 1)} each')
    numbers = {r.name: i for i, r in enumerate(todo, 1)}
    label = {r.name: f'[{numbers[r.name]}/{len(todo)}] {r.name}' for r in todo}
    waiting, running, failed, started, held = list(todo), {}, [], {}, {}
    if jobs == 1:  # no worker to start: each run here, in turn, its progress shown at once
        progress, pool = None, _InThisProcess(_ShowAtOnce(board), threads)
    else:
        context = multiprocessing.get_context('spawn')
        progress = context.Queue()
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context,
                                   initializer=_start_worker, initargs=(progress, threads))
    with pool:
        while waiting or running:
            for run in list(waiting):
                upstream = plan.waits_for(run)
                run_dir = RunDir(run.work_dir)
                if run_dir.finished:  # by the invocation that held it
                    waiting.remove(run)
                    console.line(f'{label[run.name]}: done by '
                                 f'{held.pop(run.name, "another invocation on this work dir")}')
                elif upstream is not None and upstream.name in failed:
                    waiting.remove(run)
                    failed.append(run.name)
                    console.line(f'{label[run.name]}: skipped, its upstream run {upstream.name} '
                                 'failed')
                elif len(running) < jobs and (upstream is None
                                              or RunDir(upstream.work_dir).finished):
                    try:
                        taken_over = run_dir.claim()
                    except RunHeld as err:
                        if run.name not in held:
                            held[run.name] = err.holder.describe()
                            console.line(f'{label[run.name]}: held by {held[run.name]}; '
                                         'waiting for it')
                        continue
                    held.pop(run.name, None)
                    waiting.remove(run)
                    if taken_over is not None:
                        console.line(f'{label[run.name]}: took over the claim of '
                                     f'{taken_over.describe()}, which is no longer running')
                    console.line(f'{label[run.name]}: {prepare(run)}'
                                 + ('' if verbose else f', log: {run_dir.path / RUN_LOG}'))
                    running[pool.submit(_work, run, verbose)] = run
                    started[run.name] = time.time()
                    board.begin(run.name, label[run.name])
            finished, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
            if not running and waiting:
                time.sleep(0.5)  # only runs held elsewhere, or waiting on them
            _drain(progress, board)
            for future in finished:
                run = running.pop(future)
                RunDir(run.work_dir).release()
                board.end(run.name)
                log = run.work_dir / RUN_LOG
                try:
                    record = future.result()
                except Exception as err:
                    failed.append(run.name)
                    console.line(f'{label[run.name]}: FAILED ({type(err).__name__}: {err}); '
                                 f'log: {log}')
                else:
                    console.line(f'{label[run.name]}: done in '
                                 f'{clock(time.time() - started[run.name])}, '
                                 f'{_summary(record.metrics)}')
    return failed



def _drain(progress: Optional[multiprocessing.Queue], board: _Board) -> None:
    while progress is not None:
        try:
            board.show(*progress.get_nowait())
        except queue.Empty:
            return
