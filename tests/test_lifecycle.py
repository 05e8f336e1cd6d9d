"""A run's lifecycle: each state from the work dir and the executor's view, Slurm's job states read
once with one answer, and the one loop driven by executors that implement only start and poll
(docs/design.md, "The run lifecycle")."""
import io
import json
import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import torch
from helpers import copy_runs, reduced_suite

from cb_transfer.record import Cost, Provenance, RunRecord
from cb_transfer.results import build_table, read_run_dirs
from cb_transfer.robustness.evaluate import RESULTS
from cb_transfer.run_dir import CLAIM, Claim, RunDir
from cb_transfer.suite.console import Console
from cb_transfer.suite.lifecycle import (SLURM_PHASES, Job, Phase, State, claimed, run_status,
                                         slurm_job)
from cb_transfer.suite.loop import Executor, carry_out, show_status
from cb_transfer.suite.plan import Plan, PlannedRun, Stage, load_plan


def planned(root: Path, name: str, after: Optional[str] = None,
            stage: Stage = Stage.FINETUNING) -> PlannedRun:
    return PlannedRun(name=name, suite='t', stage=stage, arm='plain', config='c.py', seed=0,
                      protocol='two-stage', work_dir=root / name, after=after)


def write_record(run: PlannedRun) -> None:
    """What a run's work writes when it is done."""
    RunDir(run.work_dir).path.mkdir(parents=True, exist_ok=True)
    RunDir(run.work_dir).write_record(RunRecord(
        name=run.name, suite='t', config='c.py', provenance=Provenance(
            stage=run.stage.value, protocol='two-stage', arm='plain', pair=None, seed=0,
            weights=None, change='plain', backbone={}, experiment='[]', task='segmentation',
            dataset='ADE20K', model='UPerNet', arch='a', schedule='1k'),
        final_checkpoint='iter_1.pth', iterations=1, evaluations=1, metrics=dict(mIoU=40.0),
        cost=Cost(processes=1, device='cpu'), launcher='none', host='h', finished_at='t'))


# ---- Slurm's states -------------------------------------------------------------------------

@pytest.fixture
def scontrol(tmp_path, monkeypatch):
    """A fake ``scontrol`` on the PATH that answers ``show job`` with the given fields (an empty
    dict: the job is forgotten)."""
    answer = tmp_path / 'answer.txt'
    script = tmp_path / 'bin' / 'scontrol'
    script.parent.mkdir()
    script.write_text(f'#!/bin/sh\n[ -s {answer} ] || exit 1\ncat {answer}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv('PATH', f'{script.parent}{os.pathsep}{os.environ["PATH"]}')

    def set_fields(**fields):
        answer.write_text(' '.join(f'{k}={v}' for k, v in fields.items()) + '\n')
    return set_fields


SLURM_CASES = [  # scontrol's JobState -> the phase, the run's state, a claim of that job
    ('PENDING', Phase.QUEUED, State.QUEUED, 'live'),
    ('REQUEUE_HOLD', Phase.QUEUED, State.QUEUED, 'live'),
    ('RUNNING', Phase.RUNNING, State.RUNNING, 'live'),
    ('COMPLETING', Phase.RUNNING, State.RUNNING, 'live'),
    ('PREEMPTED', Phase.ENDED, State.FAILED, 'stale'),
    ('NODE_FAIL', Phase.ENDED, State.FAILED, 'stale'),
    ('TIMEOUT', Phase.ENDED, State.FAILED, 'stale'),
]


@pytest.mark.parametrize('job_state,phase,state,claim', SLURM_CASES)
def test_a_slurm_job_state_is_read_once_with_one_answer(job_state, phase, state, claim,
                                                        scontrol, tmp_path):
    scontrol(JobId=7, JobState=job_state, Reason='None', Restarts=0)
    job = slurm_job('7')
    assert job.phase is phase and job.id == '7' and not job.blocked
    assert SLURM_PHASES[job_state] is phase
    run = planned(tmp_path, 'r')
    assert run_status(run, job).state is state
    # the claim's staleness check reads the same answer: a job elsewhere, over or not
    holder = Claim(host='another-node', pid=1, started='t', job='7')
    assert holder.is_stale() is (claim == 'stale')
    if state is State.FAILED:
        assert f'Slurm: {job_state}' in run_status(run, job).detail


def test_a_job_behind_a_failed_dependency_is_blocked_and_a_forgotten_job_is_over(scontrol,
                                                                                 tmp_path):
    run = planned(tmp_path, 'r')
    scontrol(JobId=8, JobState='PENDING', Reason='DependencyNeverSatisfied', Restarts=0)
    assert run_status(run, slurm_job('8')).state is State.BLOCKED
    scontrol(JobId=8, JobState='RUNNING', Reason='None', Restarts=2)
    assert 'restart 2' in run_status(run, slurm_job('8')).detail
    scontrol()  # Slurm has forgotten the job (MinJobAge after it ended)
    assert slurm_job('8').phase is Phase.ENDED
    assert run_status(run, slurm_job('8')).state is State.FAILED
    assert Claim(host='another-node', pid=1, started='t', job='8').is_stale()
    write_record(run)  # a record says done, whatever the scheduler says
    assert run_status(run, slurm_job('8')).state is State.DONE


def test_every_state_slurm_documents_has_a_phase_and_an_unknown_one_is_never_taken_for_over(
        scontrol):
    assert len(SLURM_PHASES) == 24
    scontrol(JobId=9, JobState='SOMETHING_NEW', Reason='None', Restarts=0)
    assert slurm_job('9').phase is Phase.QUEUED


# ---- the states from the work dir ----------------------------------------------------------

def test_each_state_from_the_work_dir(tmp_path):
    run = planned(tmp_path, 'r')
    assert run_status(run).state is State.NEW
    run.work_dir.mkdir()
    (run.work_dir / 'iter_10.pth').write_bytes(b'')
    assert run_status(run).state is State.RESUMABLE
    assert run_status(run, upstream_failed=True).state is State.BLOCKED
    other = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:  # claimed by a live process of this host
        (run.work_dir / CLAIM).write_text(json.dumps(dict(
            host=socket.gethostname(), pid=other.pid, started='t', job=None)))
        status = run_status(run)
        assert status.state is State.HELD and f'pid {other.pid}' in status.detail
    finally:
        other.kill()
        other.wait()
    assert run_status(run).state is State.RESUMABLE  # its holder is gone: a stale claim
    assert run_status(run, Job(Phase.RUNNING)).state is State.RUNNING
    assert run_status(run, Job(Phase.QUEUED, '5')).state is State.QUEUED
    ended = run_status(run, Job(Phase.ENDED, detail='ValueError: bad'))
    assert ended.state is State.FAILED and ended.detail == 'ValueError: bad'
    write_record(run)
    assert run_status(run).state is State.DONE
    robust = planned(tmp_path, 'r/robustness', stage=Stage.ROBUSTNESS)
    robust.work_dir.mkdir()
    assert run_status(robust).state is State.NEW
    (robust.work_dir / RESULTS).write_text(json.dumps(
        dict(corruption='clean', severity=0, metrics={})) + '\n')
    assert run_status(robust).state is State.RESUMABLE


def test_a_claim_is_released_however_the_work_ends(tmp_path):
    run = planned(tmp_path, 'r')
    with pytest.raises(RuntimeError):
        with claimed(run) as note:
            assert note == 'starting' and RunDir(run.work_dir).holder().pid == os.getpid()
            raise RuntimeError('the work failed')
    assert RunDir(run.work_dir).holder() is None


# ---- the loop, with executors that implement only start and poll ----------------------------

class Fake(Executor):
    """Runs 'end' after ``polls`` looks: done (writes the record) unless the run is in ``fail``."""

    def __init__(self, fail=(), polls: int = 2, chains: bool = False, slots=1) -> None:
        self.fail, self.polls, self.chains, self.slots = set(fail), polls, chains, slots
        self.started: List[tuple] = []
        self.looks: Dict[str, int] = {}
        self.poll_s = 0.0

    def describe(self, plan, run):
        return run.name

    def start(self, plan, run, note, upstream):
        self.started.append((run.name, upstream.id if upstream else None))
        self.looks[run.name] = 0
        return Job(Phase.QUEUED, f'job-{run.name}'), f'started {run.name}'

    def poll(self, run):
        if run.name not in self.looks:
            return None
        self.looks[run.name] += 1
        if self.looks[run.name] < self.polls:
            return Job(Phase.RUNNING, f'job-{run.name}')
        if run.name in self.fail:
            return Job(Phase.ENDED, f'job-{run.name}', detail='it broke')
        if not RunDir(run.work_dir).done:
            write_record(run)
        return Job(Phase.ENDED, f'job-{run.name}')


def console() -> tuple:
    stream = io.StringIO()
    return Console(stream), stream


def test_the_loop_starts_each_run_after_its_upstream_run_and_skips_what_a_failure_feeds(
        tmp_path):
    runs = [planned(tmp_path, 'up'), planned(tmp_path, 'down', after='up'),
            planned(tmp_path, 'other'), planned(tmp_path, 'down2', after='other')]
    plan = Plan('t.py', tmp_path, runs, seeds=[0])
    executor = Fake(fail={'other'})
    out, stream = console()
    outcome = carry_out(plan, executor, out)
    text = stream.getvalue()
    assert [name for name, _ in executor.started] == ['up', 'down', 'other']
    assert all(up is None for _, up in executor.started)   # no chaining: upstream was done
    assert outcome.unfinished == ['other', 'down2']
    assert '[3/4] other: FAILED (it broke)' in text
    assert '[4/4] down2: skipped, its upstream run failed' in text
    assert text.count(': done in ') == 2
    assert '3 runs started; 0 runs already done, 0 already queued' in text
    again, stream = console()  # a failure of an earlier invocation is started again
    executor = Fake()
    assert carry_out(plan, executor, again).unfinished == []
    assert [name for name, _ in executor.started] == ['other', 'down2']
    assert '2 runs started; 2 runs already done, 0 already queued' in stream.getvalue()


def test_an_executor_that_chains_starts_a_run_behind_its_upstream_job(tmp_path):
    runs = [planned(tmp_path, 'up'), planned(tmp_path, 'down', after='up')]
    plan = Plan('t.py', tmp_path, runs, seeds=[0])
    executor = Fake(chains=True, slots=None, polls=3)
    carry_out(plan, executor, console()[0])
    assert executor.started == [('up', None), ('down', 'job-up')]


def test_a_run_held_by_another_invocation_is_waited_for_and_not_run_twice(tmp_path):
    runs = [planned(tmp_path, 'held'), planned(tmp_path, 'after', after='held')]
    plan = Plan('t.py', tmp_path, runs, seeds=[0])
    other = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    runs[0].work_dir.mkdir(parents=True)
    (runs[0].work_dir / CLAIM).write_text(json.dumps(dict(
        host=socket.gethostname(), pid=other.pid, started='t', job=None)))

    def finish_elsewhere():  # the other invocation ends its run a moment later
        write_record(runs[0])
        (runs[0].work_dir / CLAIM).unlink()
        other.kill()
    timer = threading.Timer(0.3, finish_elsewhere)
    timer.start()
    try:
        executor = Fake()
        executor.poll_s = 0.05
        out, stream = console()
        outcome = carry_out(plan, executor, out)
    finally:
        timer.join()
        other.wait()
    text = stream.getvalue()
    assert outcome.unfinished == [] and [n for n, _ in executor.started] == ['after']
    assert f'[1/2] held: held by {socket.gethostname()} pid {other.pid}' in text
    assert '[1/2] held: done by another invocation on this work dir' in text
    out, stream = console()
    show_status(plan, executor, out)
    assert stream.getvalue().splitlines()[-1] == '2 done'


class InThreads(Executor):
    """A fake executor that implements only start and poll: each run's work
    (:func:`cb_transfer.suite.job.execute`) in a thread of this process."""

    def __init__(self) -> None:
        self.threads: Dict[str, threading.Thread] = {}
        self.errors: Dict[str, BaseException] = {}

    def describe(self, plan, run):
        return run.name

    def start(self, plan, run, note, upstream):
        from cb_transfer.suite.job import execute

        def work():
            try:
                execute(run)
            except BaseException as err:  # noqa: B902 (reported through poll)
                self.errors[run.name] = err
        self.threads[run.name] = threading.Thread(target=work)
        self.threads[run.name].start()
        return self.poll(run), f'{run.name}: {note} in a thread'

    def poll(self, run):
        thread = self.threads.get(run.name)
        if thread is None:
            return None
        if thread.is_alive():
            return Job(Phase.RUNNING)
        error = self.errors.get(run.name)
        return Job(Phase.ENDED, detail=repr(error) if error else '')


def test_a_fake_executor_runs_a_suite_through_the_loop_to_the_same_table(local_suite,
                                                                          monkeypatch):
    """The reduced default suite's first pair, fine-tuned (segmentation, seed 0) from the same
    pretraining runs: the loop and the run's work alone give the local executor's numbers."""
    cwd = local_suite.cwd
    suite = reduced_suite(cwd, 'in_threads', detection=False,
                          extra='upstream_seeds = [0]\nseeds = [0]\n')
    work_dir = cwd / 'work_dirs' / 'in_threads'
    plan = load_plan(str(suite), str(work_dir))
    copy_runs(local_suite.work_dir, work_dir, *[r.name for r in plan.runs
                                                 if r.stage is Stage.PRETRAINING])
    monkeypatch.chdir(cwd)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the local suite's workers
    try:
        out, stream = console()
        outcome = carry_out(plan, InThreads(), out)
    finally:
        torch.set_num_threads(threads)
    assert outcome.unfinished == [], stream.getvalue()
    assert stream.getvalue().count('in a thread') == 2   # the fine-tuning runs only

    def values(root: Path) -> dict:
        runs, _ = read_run_dirs([r.work_dir for r in load_plan(str(suite), str(root)).runs])
        return {(row.task, row.metric): (row.control_values, row.treatment_values)
                for row in build_table(runs).rows}
    mine, local = values(work_dir), values(local_suite.work_dir)
    assert {'classification', 'segmentation'} == {task for task, _ in mine}
    for key, arms in mine.items():   # pair 0 of the local suite's two
        assert arms == tuple([v for v in arm if v[0] == 0] for arm in local[key]), key
