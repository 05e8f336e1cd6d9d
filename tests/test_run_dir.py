"""RunDir: claims that keep two invocations off one run, records written whole, attempts moved
aside."""
import dataclasses
import json
import os
import socket
import subprocess
import sys

import pytest
from mmengine.config import Config

from cb_transfer.record import Cost, Provenance, RunRecord, Weights
from cb_transfer.run_dir import CLAIM, Claim, RunDir, RunHeld


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
    assert run_dir.record is None and not run_dir.done
    weights = Weights(path='/w/epoch_1.pth', file='epoch_1.pth', sha256='ab' * 32,
                      pretrained_arm='+CB(mlp)', upstream_run='upstream/x/seed0')
    record = RunRecord(
        name='n', suite='s', config='c.py', provenance=Provenance(
            stage='downstream', protocol='two-stage', arm='cb', pair=0, seed=1, weights=weights,
            change='+CB(mlp)', backbone=dict(cb=True, cb_position='mlp'), experiment='[]',
            task='segmentation', dataset='ADE20K', model='UPerNet', arch='deit', schedule='1k'),
        final_checkpoint='iter_1.pth', iterations=1, evaluations=1, metrics=dict(mIoU=1.0),
        cost=Cost(processes=2, device='cpu', seconds_per_iter=0.5), launcher='none', host='h',
        finished_at='t')
    run_dir.write_record(record)
    assert run_dir.record == record and run_dir.done  # typed, nested, equal when read back
    assert run_dir.record.device_seconds == 1.0
    assert [p.name for p in run_dir.path.iterdir()] == ['record.json']  # no partial file left
    (run_dir.path / 'record.json').write_text('{"name": "n"')  # cut short
    assert run_dir.record is None


SCHEMA_1 = dict(  # a record as versions before schema 2 wrote it: flat, no identity
    name='two-stage/c/pair0/seed1', suite='s', stage='downstream', arm='cb',
    backbone=dict(cb=True, cb_position='mlp'), protocol='two-stage', seed=1, pair=0,
    config='c.py', checkpoint='/w/iter_1000.pth', iterations=1000, metrics=dict(mIoU=41.0),
    weights=dict(file='epoch_2.pth', path='/u/epoch_2.pth', sha256='cd' * 32,
                 pretrained_arm='+CB(mlp)', upstream_run='upstream/c/seed0'),
    cost=dict(seconds_per_iter=0.25, iterations=1000, processes=1, device='cpu'),
    launcher='none', host='h', finished='2026-01-01T00:00:00+00:00', schema=1)


def test_a_schema_1_record_is_read_by_name_and_an_unknown_schema_is_refused(tmp_path):
    run_dir = RunDir(tmp_path / 'run')
    (run_dir.path / '20260101_000000' / 'vis_data').mkdir(parents=True)
    Config(dict(default_scope='mmseg', protocol='two-stage', randomness=dict(seed=1),
                model=dict(type='EncoderDecoder', decode_head=dict(type='UPerHead'),
                           backbone=dict(type='cb_transfer.ViT', arch='deit', cb=True)),
                train_dataloader=dict(dataset=dict(type='ADE20KDataset')),
                train_cfg=dict(max_iters=1000))).dump(
        str(run_dir.path / '20260101_000000' / 'vis_data' / 'config.py'))
    (run_dir.path / 'record.json').write_text(json.dumps(SCHEMA_1))
    record = run_dir.record
    p = record.provenance
    assert (p.stage, p.arm, p.pair, p.seed, p.protocol) == ('downstream', 'cb', 0, 1, 'two-stage')
    assert p.weights == Weights(**SCHEMA_1['weights'])
    assert (p.change, p.task, p.dataset, p.model, p.schedule) == (
        '+CB(mlp)', 'segmentation', 'ADE20K', 'UPerNet', '1k')
    assert record.final_checkpoint == '/w/iter_1000.pth' and record.finished_at.startswith('2026')
    assert record.device_seconds == 250.0 and run_dir.problems == []
    (run_dir.path / 'record.json').write_text(json.dumps(dict(SCHEMA_1, schema=99)))
    assert run_dir.record is None and not run_dir.done
    assert 'schema 99' in run_dir.problems[-1] and 'record.json' in run_dir.problems[-1]


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
