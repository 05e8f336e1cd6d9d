"""Runs of several processes on one machine: the process group's lifecycle (every process exits
0, whether the run ends with a validation, which happens to synchronise the ranks, or without),
and one run through the suite's torchrun executor ending with the weights of tools/dist_train.sh.
The Slurm launches of the same run are in test_slurm.py."""
import sys

import pytest
from helpers import (REPO, SEG, assert_same_weights, run, run_python, schedule, state_dict,
                     suite_command)

from cb_transfer.run_dir import RunDir

DIST_TRAIN = REPO / 'tools' / 'dist_train.sh'
NO_VALIDATION = ['val_cfg=None', 'val_dataloader=None', 'val_evaluator=None']


def two_processes(cwd, work_dir, *cfg_options, port: int):
    env = dict(GPUS='2', PORT=str(port), PYTHON=sys.executable, OMP_NUM_THREADS='1')
    return run(['bash', DIST_TRAIN, REPO / SEG[0], '--work-dir', work_dir, '--cfg-options',
                *cfg_options], cwd, env=env, check=False)


SESSION = '''
import os, socket
import torch, torch.distributed as dist, torch.nn as nn
from cb_transfer.launch import distributed_session

def threads():
    return len(os.listdir('/proc/self/task'))

s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()
os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK='0', WORLD_SIZE='1')
before = threads()
{enter}
    dist.init_process_group('gloo')
    class Runner: pass
    runner = Runner(); runner.loop = runner  # a reference cycle, as mmengine's runner has
    runner.model = nn.parallel.DistributedDataParallel(nn.Linear(2, 1))
    runner.model(torch.ones(4, 2)).sum().backward()
    dist.broadcast_object_list([None])
    during = threads()
    del runner
{leave}
print('THREADS', before, during, threads())
'''


@pytest.mark.parametrize('session', [True, False], ids=['distributed_session', 'destroy_only'])
def test_no_gloo_thread_outlives_the_session(session):
    """The cause of the abort at exit: gloo's worker threads outliving the process group's end
    into the interpreter's finalization. Destroying the group alone leaves them running (the
    distributed model, in a reference cycle, still holds the group); the session collects it
    first, and the group's destructor joins them."""
    code = SESSION.format(enter='with distributed_session():' if session else 'if True:',
                          leave='' if session else '    dist.barrier()\n'
                          '    dist.destroy_process_group()')
    line = next(x for x in run_python(code).stdout.splitlines() if x.startswith('THREADS'))
    before, during, after = map(int, line.split()[1:])
    assert during > before
    assert (after == before) is session, (before, during, after)


def test_every_process_exits_0_after_a_run_ending_with_and_without_validation(smoke_cwd):
    """torchrun exits 0 only when both ranks did; each rank ends its process group (a rank that
    leaves it to the interpreter's exit aborts in gloo's threads: 'terminate called without an
    active exception')."""
    for name, options in (('validated', schedule(30, 30)),
                          ('not_validated', schedule(30, 30) + NO_VALIDATION)):
        proc = two_processes(smoke_cwd, smoke_cwd / f'gloo_{name}', *options,
                             port=29521 + len(name))
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-6000:]
        assert 'CPU distributed run (pytorch): gloo backend, rank 0 of 2' in log
        assert 'terminate called' not in log and 'ChildFailedError' not in log
        assert (smoke_cwd / f'gloo_{name}' / 'iter_30.pth').is_file()
        validated = RunDir(smoke_cwd / f'gloo_{name}').scalars()[1]
        assert (30 in validated) is (name == 'validated'), name


def test_the_torchrun_executor_ends_with_the_weights_of_dist_train(two_process_reference,
                                                                    smoke_cwd):
    work_dir = smoke_cwd / 'work_dirs' / 'torchrun'
    out = run(suite_command(two_process_reference.suite, work_dir, '--launcher', 'pytorch',
                            '--gpus', 2), smoke_cwd, env=dict(OMP_NUM_THREADS='1', PORT='29541'))
    run_dir = RunDir(work_dir / two_process_reference.run.name)
    record = run_dir.record
    assert record.launcher == 'pytorch' and record.cost.processes == 2
    assert f'[1/1] {two_process_reference.run.name}: starting, 2 processes' in out.stdout
    assert_same_weights(state_dict(record.final_checkpoint),
                        state_dict(two_process_reference.checkpoint))
