"""The local executor (the embedded default): the unfinished runs on this machine, up to ``jobs`` at
a time, each in a worker process with ``threads`` CPU threads (with ``jobs=1``, in this process).

Each run goes through :func:`cb_transfer.suite.job.execute`, the same work a Slurm job does; the
loop (:func:`cb_transfer.suite.loop.carry_out`) starts it once the run it starts from is done. On
a small CPU two single-threaded runs side by side do more work than one run on both cores (the
small models of the smoke suite use threads poorly, and Python's own work runs in parallel), so
by default a CPU machine runs as many runs as it has cores, up to two, one thread each. The same
seed and thread count give the same numbers; another thread count gives other rounding, so other
numbers.

The console shows the suite's own lines and one progress line (tqdm's meter, all runs together);
each run's output (mmengine's log, library warnings, pycocotools' tables) goes to
``<run work dir>/suite_run.log`` unless ``verbose``.

Why not submitit's ``AutoExecutor(cluster='local')``: it starts a fresh interpreter per run and
reports nothing until the run ends, where this executor's workers stay warm (a run's imports and
Runner start cost seconds) and stream each run's progress to the console.
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
from typing import Dict, List, Optional, Tuple

from mmengine.hooks import Hook

from .console import Console, capture_output
from .job import execute
from .lifecycle import Job, Phase, Status
from .loop import SUMMARY_METRICS, Executor
from .plan import Plan, PlannedRun, Stage

RUN_LOG = 'suite_run.log'
_progress = None  # a worker's line to the main process (a queue, or the meter in this process)


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
    """The steps of a run's progress: the iterations its config trains for, with the suite's
    options (for an epoch-based config its epochs: a first guess, which the run corrects once it
    starts); for a robustness evaluation, its evaluations."""
    if run.stage is Stage.ROBUSTNESS:
        return 1 + len(run.corruptions) * len(run.severities)
    return _schedule_length(run.config, json.dumps(run.options, sort_keys=True))


class _ReportProgress(Hook):
    """In a worker: sends (run, step, steps, loss, last metric) to the main process, a step being
    a training iteration or, for a robustness evaluation, an evaluation (loss nan)."""

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


def _work(run: PlannedRun, verbose: bool):
    """A worker's job: one run, its output in the run's log."""
    log = run.work_dir / RUN_LOG
    with contextlib.nullcontext() if verbose else capture_output(log):
        try:
            evaluations = max_iters(run) if run.stage is Stage.ROBUSTNESS else 0
            return execute(run, hooks=[_ReportProgress(run.name, evaluations)])
        except BaseException:
            traceback.print_exc()  # into the run's log
            raise


class _InThisProcess:
    """A pool of one, in this process (``jobs=1``): ``submit`` runs the run now, its progress
    shown as it goes."""

    def __init__(self, meter: '_Meter', threads: int) -> None:
        _start_worker(meter, threads)

    def submit(self, fn, *args) -> Future:
        future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as err:
            future.set_exception(err)
        return future

    def shutdown(self) -> None:
        return None


class _Meter:
    """The console's view of the runs in progress: tqdm's meter over the steps of every run
    (so its rate and time left count the runs going on side by side), and each running run's
    step, loss and last metric."""

    def __init__(self, console: Console, expected: Dict[str, int]) -> None:
        self.console = console
        self.expected = dict(expected)   # name -> steps, corrected as runs report
        self.start = time.time()
        self.running: Dict[str, Tuple[str, tuple]] = {}   # name -> (label, last report)
        self.finished_steps = 0

    def begin(self, name: str, label: str) -> None:
        self.running[name] = (label, ())

    def end(self, name: str) -> None:
        if self.running.pop(name, None) is not None:
            self.finished_steps += self.expected[name]

    def put(self, message: tuple) -> None:
        """A run's progress: (name, step, steps, loss, last metric)."""
        from tqdm import tqdm
        name, step, steps, loss, metric = message
        self.expected[name] = steps
        label = self.running.get(name, (name, ()))[0]
        self.running[name] = (label, message)
        parts = [f'{label}: ' + (f'evaluation {i}/{n}' if math.isnan(l)  # robustness
                                 else f'iter {i}/{n} loss {l:.3f}') + m
                 for label, (_, i, n, l, m) in ((lb, r) for lb, r in self.running.values() if r)]
        done = self.finished_steps + sum(r[1] for _, r in self.running.values() if r)
        meter = tqdm.format_meter(done, sum(self.expected.values()), time.time() - self.start,
                                  prefix='suite', unit='step', ascii=True)
        self.console.update(meter + ' | ' + ' | '.join(parts), force=step == steps)


class LocalExecutor(Executor):
    """The unfinished runs on this machine, ``jobs`` at a time (see the module's docstring).

    The loop claims each run for this process before it starts; a run held by another live
    process (a second invocation on the same work dir, a Slurm job) is waited for, and the runs
    that start from it wait with it.
    """

    def __init__(self, jobs: Optional[int] = None, threads: Optional[int] = None,
                 verbose: bool = False) -> None:
        self.jobs = self.slots = jobs or default_jobs()
        self.threads = threads or max(1, (os.cpu_count() or 1) // self.jobs)
        self.verbose = verbose
        self.futures: Dict[str, Future] = {}
        self.pool = self.progress = self.meter = None

    def describe(self, plan: Plan, run: PlannedRun) -> str:
        weights = f' from {run.weights.describe()}' if run.weights else ''
        return (f'{run.name}: train and test {run.config_name} (seed {run.seed}){weights} in '
                f'{"this process" if self.jobs == 1 else "a worker process"}, '
                f'{self.threads} thread{"s" * (self.threads > 1)}')

    def begin(self, todo: List[PlannedRun], console: Console) -> None:
        console.line(f'{len(todo)} run{"s" * (len(todo) != 1)} to go, {self.jobs} at a time, '
                     f'{self.threads} thread{"s" * (self.threads > 1)} each')
        self.meter = _Meter(console, {r.name: max_iters(r) for r in todo})
        self.labels = {r.name: f'[{i}/{len(todo)}] {r.name}' for i, r in enumerate(todo, 1)}
        if self.jobs == 1:  # no worker to start: each run here, in turn
            self.pool = _InThisProcess(self.meter, self.threads)
        else:
            context = multiprocessing.get_context('spawn')
            self.progress = context.Queue()
            self.pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=context,
                                            initializer=_start_worker,
                                            initargs=(self.progress, self.threads))

    def start(self, plan: Plan, run: PlannedRun, note: str,
              upstream: Optional[Job]) -> Tuple[Job, str]:
        log = run.work_dir / RUN_LOG
        line = f'{run.name}: {note}' + ('' if self.verbose else f', log: {log}')
        self.meter.begin(run.name, self.labels.get(run.name, run.name))
        self.futures[run.name] = self.pool.submit(_work, run, self.verbose)
        return self.poll(run), line

    def poll(self, run: PlannedRun) -> Optional[Job]:
        future = self.futures.get(run.name)
        if future is None:
            return None
        log = None if self.verbose else run.work_dir / RUN_LOG
        if not future.done():
            return Job(Phase.RUNNING, log=log)
        err = future.exception()
        return Job(Phase.ENDED, detail=f'{type(err).__name__}: {err}' if err else '', log=log)

    def update(self, statuses: List[Status], console: Console) -> None:
        while self.progress is not None:
            try:
                self.meter.put(self.progress.get_nowait())
            except queue.Empty:
                break
        for name, future in self.futures.items():
            if future.done():
                self.meter.end(name)

    def wait(self, timeout: float) -> None:
        running = [f for f in self.futures.values() if not f.done()]
        if running:
            wait(running, timeout=timeout, return_when=FIRST_COMPLETED)
        else:  # only runs held elsewhere, or waiting on them
            time.sleep(timeout)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
