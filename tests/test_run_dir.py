"""RunDir: claims that keep two invocations off one run, records written whole, attempts moved
aside."""
import dataclasses
import json
import os
import socket
import subprocess
import sys

import pytest

from cb_transfer.run_dir import CLAIM, Claim, RunDir, RunHeld, RunRecord


def write_claim(run_dir: RunDir, **fields) -> Claim:
    claim = Claim(**{**dataclasses.asdict(Claim.mine()), **fields})
    run_dir.path.mkdir(parents=True, exist_ok=True)
    (run_dir.path / CLAIM).write_text(json.dumps(dataclasses.asdict(claim)))
    return claim


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


def test_a_claim_held_by_a_live_process_is_refused_naming_it(tmp_path):
    run_dir = RunDir(tmp_path / 'run')
    with subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']) as other:
        try:
            write_claim(run_dir, pid=other.pid, started='2026-12-01T10:00:00+00:00')
            with pytest.raises(RunHeld, match=f'being run by {socket.gethostname()} pid '
                               f'{other.pid}, since 2026-12-01T10:00:00'):
                run_dir.claim()
            run_dir.release()  # not ours: left alone
            assert run_dir.holder().pid == other.pid
        finally:
            other.kill()


def test_a_claim_of_a_dead_process_on_this_host_is_taken_over_and_returned(tmp_path):
    run_dir = RunDir(tmp_path / 'run')
    stale = write_claim(run_dir, pid=dead_pid())
    assert run_dir.claim() == stale
    assert run_dir.holder().pid == os.getpid()
    assert run_dir.claim() is None  # claimed already, by this process
    run_dir.release()
    assert not (run_dir.path / CLAIM).exists()


def test_a_claim_on_another_host_without_a_job_is_held(tmp_path):
    run_dir = RunDir(tmp_path / 'run')
    write_claim(run_dir, host='elsewhere', pid=dead_pid())
    with pytest.raises(RunHeld, match='elsewhere pid'):
        run_dir.claim()


def test_a_requeued_slurm_job_takes_over_its_own_claim(tmp_path, monkeypatch):
    run_dir = RunDir(tmp_path / 'run')
    monkeypatch.setenv('SLURM_JOB_ID', '42')
    write_claim(run_dir, host='node7', job='42')
    assert run_dir.claim().host == 'node7'


def test_a_record_is_written_whole_and_read_back(tmp_path):
    run_dir = RunDir(tmp_path / 'run')
    run_dir.path.mkdir()
    assert run_dir.record is None and not run_dir.finished
    record = RunRecord(name='n', suite='s', stage='downstream', arm='cb', backbone=dict(cb=True),
                       protocol='two-stage', seed=1, pair=0, config='c.py', checkpoint='iter_1.pth',
                       iterations=1, metrics=dict(mIoU=1.0), weights=None, cost={},
                       launcher='none', host='h', finished='t')
    run_dir.write_record(record)
    assert run_dir.record == record and run_dir.finished
    assert [p.name for p in run_dir.path.iterdir()] == ['record.json']  # no partial file left
    (run_dir.path / 'record.json').write_text('{"name": "n"')  # cut short
    assert run_dir.record is None


def test_an_attempt_is_moved_aside_whole_and_numbered(tmp_path):
    run_dir = RunDir(tmp_path / 'run')
    (run_dir.path / '20260101_000000').mkdir(parents=True)
    (run_dir.path / 'suite_run.log').write_text('Traceback: it failed')
    (run_dir.path / 'slurm').mkdir()
    run_dir.claim()
    first = run_dir.move_aside(keep=['slurm'])
    assert first == run_dir.path / 'attempts' / '1'
    assert (first / 'suite_run.log').read_text() == 'Traceback: it failed'
    assert sorted(p.name for p in run_dir.path.iterdir()) == ['attempts', 'claim.json', 'slurm']
    (run_dir.path / 'suite_run.log').write_text('again')
    assert run_dir.move_aside(keep=['slurm']) == run_dir.path / 'attempts' / '2'
    assert run_dir.move_aside(keep=['slurm']) is None  # nothing left to move
