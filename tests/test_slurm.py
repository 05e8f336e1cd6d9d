"""The suite on a real Slurm cluster: two nodes on this machine, stood up from Debian's packages by
tools/slurm_local_cluster.sh (as root, loopback only) once per test session and taken down after.

Two scenarios. Jobs of several tasks and nodes: the reduced suite's smallest run as one job of
two tasks on one node, the same job requeued after its first checkpoint, and one task on each of
the two nodes; each ends with the weights of tools/dist_train.sh with two processes.

And one scenario of single-task jobs: the reduced suite (pretraining, then UPerNet, one seed)
submitted at once; submitted again while queued; while a ``--wait`` blocks, the +CB fine-tuning
job killed for good with ``scancel`` as soon as it runs, and the plain one requeued with
``scontrol requeue`` after its first checkpoint; ``--status``; a third submission, which reruns
only the killed run.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
import torch
from helpers import (REPO, SEG_ITERS, assert_same_weights, cfg_options, job_processes,
                     reduced_suite, state_dict, suite_command)

from cb_transfer.run_dir import RunDir
from cb_transfer.suite.slurm import job_paths
from cb_transfer.suite import main as suite_main

CLUSTER = REPO / 'tools' / 'slurm_local_cluster.sh'
SLURM_ARGS = ['--launcher', 'slurm', '--gpus-per-node', 0, '--cpus-per-task', 1,
              '--time-min', 30, '--max-requeues', 2, '--poll-seconds', 2]
REQUEUED = 'two-stage/upernet_vit-tiny-p8_1xb4-240iter_smoke-ade20k-64x64/pair0/seed0'
KILLED = 'two-stage/upernet_vit-tiny-p8-cb_1xb4-240iter_smoke-ade20k-64x64/pair0/seed0'

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which('apt-get') or shutil.which('slurmctld')),
    reason='standing up Slurm needs root and Debian packages (CI runs as root)')


@pytest.fixture(scope='session')
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp('slurm')
    try:
        proc = subprocess.run(['bash', str(CLUSTER), 'up', str(state), '2'], capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield {'SLURM_CONF': str(state / 'slurm.conf')}
    finally:
        subprocess.run(['bash', str(CLUSTER), 'down', str(state)], capture_output=True,
                       timeout=120)


def requeue(job: str, env: dict) -> None:
    """``scontrol requeue`` a running job. Its processes are stopped first where they stand, so
    that however fast the machine they cannot train to the end before the requeue takes; and
    killed once Slurm has taken it (this cluster's process tracking leaves a job's Python
    processes running past the SIGTERM, which submitit ignores: a real node kills them after
    KillWait)."""
    pids = job_processes(job)
    assert pids, f'no process of job {job} found'
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    deadline = time.time() + 60
    while subprocess.run(['scontrol', 'requeue', job], env={**os.environ, **env},
                         capture_output=True).returncode != 0:  # "pending execution" at first
        assert time.time() < deadline
        time.sleep(0.5)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def scontrol(job_id: str, env: dict) -> dict:
    out = subprocess.run(['scontrol', 'show', 'job', '-o', str(job_id)], capture_output=True,
                         text=True, env={**os.environ, **env}).stdout
    return dict(re.findall(r'(\w+)=(\S*)', out))


def job_ids(work_dir: Path) -> list:
    return sorted((p.name.split('_')[0] for p in (work_dir / 'slurm').glob('*_submitted.pkl')),
                  key=int)


def wait_until(condition, what: str, timeout: float = 300):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f'timed out waiting for {what}'
        time.sleep(0.5)


def in_process(args: list, cwd: Path, env: dict) -> str:
    """``cb-run-suite ARGS`` in this process (no interpreter to start), for what trains nothing
    here: dry runs, submissions, status, waiting on the jobs."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    here = os.getcwd()
    try:
        os.chdir(cwd)
        with tempfile.TemporaryFile('w+') as console, \
                mock.patch('cb_transfer.suite.cli.console_stream', lambda: console):
            assert suite_main([str(a) for a in args]) == 0
            console.seek(0)
            return console.read()
    finally:
        os.chdir(here)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value


@pytest.fixture(scope='module')
def scenario(cluster, local_suite):
    cwd = local_suite.cwd
    suite = reduced_suite(cwd, 'reduced_seg', detection=False)
    suite.write_text(suite.read_text() + 'upstream_seeds = [0]\nseeds = [0]\n')
    work_dir = cwd / 'work_dirs' / 'slurm'
    submit = suite_command(suite, work_dir, *SLURM_ARGS)
    out = SimpleNamespace(suite=suite, work_dir=work_dir, env=cluster, times=[])
    out.times.append(('dry_run', time.time()))
    out.dry_run = in_process(submit[2:] + ['--dry-run'], cwd, cluster)
    out.dry_run_wrote = work_dir.exists()
    out.times.append(('first', time.time()))
    out.first = in_process(submit[2:], cwd, cluster)
    out.times.append(('second', time.time()))
    out.second = in_process(submit[2:], cwd, cluster)

    # while a --wait blocks, one fine-tuning job is killed for good as soon as it runs (long
    # before it could finish, however fast the machine), the other requeued part-way
    waiting = subprocess.Popen(submit + ['--wait'], cwd=cwd, env={**os.environ, **cluster},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = work_dir / KILLED
    wait_until(lambda: job_ids(killed) and scontrol(job_ids(killed)[-1], cluster).get(
        'JobState') == 'RUNNING' and list(killed.glob('slurm/*_log.out')), f'{KILLED} to run')
    out.times.append(('killed_job', time.time()))
    out.killed_job = job_ids(killed)[-1]
    subprocess.run(['scancel', out.killed_job], env={**os.environ, **cluster}, check=True)

    out.times.append(('requeued', time.time()))
    requeued = work_dir / REQUEUED
    marker = requeued / 'last_checkpoint'  # written once iter_10.pth is whole
    wait_until(lambda: marker.exists() and marker.read_text().strip().endswith('iter_10.pth'),
               f'{REQUEUED} to save iter_10.pth')
    (job,) = job_ids(requeued)
    requeue(job, cluster)
    out.waited, out.waited_stderr = waiting.communicate(timeout=600)
    out.waited_code = waiting.returncode
    out.times.append(('status', time.time()))
    out.status = in_process(submit[2:] + ['--status'], cwd, cluster)
    out.times.append(('third', time.time()))
    out.third = in_process(submit[2:] + ['--wait'], cwd, cluster)
    out.times.append(('end', time.time()))
    (cwd / 'slurm_scenario.txt').write_text('\n\n'.join(
        f'== {k}\n{v}' for k, v in vars(out).items()))  # for reading when a test fails
    return out


def test_dry_run_prints_every_job_with_its_dependency_and_submits_nothing(scenario):
    lines = [line for line in scenario.dry_run.splitlines() if 'sbatch --' in line]
    assert len(lines) == 4 and not scenario.dry_run_wrote
    for line in lines:
        assert '--ntasks-per-node=1' in line and '--cpus-per-task=1' in line
        assert '--time=30' in line and '--signal=USR2@120' in line
        if 'two-stage/' in line:
            arm = '-cb' if '-cb_' in line.split(':')[0] else ''
            assert (f'--dependency=afterok:<job of upstream/vit-tiny-p8{arm}_1xb32-12e_'
                    in line)


def test_every_run_is_a_job_and_fine_tuning_waits_for_its_pretraining_job(scenario):
    assert '4 jobs submitted; 0 runs already done, 0 already queued' in scenario.first
    submitted = dict(re.findall(r'submitted (\S+): job (\d+)', scenario.first))
    assert len(submitted) == 4 and len(set(submitted.values())) == 4
    for name, job in submitted.items():
        assert job_ids(scenario.work_dir / name)[0] == job
        if name.startswith('two-stage/'):
            upstream = next(u for u in submitted if u.startswith('upstream/') and
                            ('-cb_' in u) == ('-cb_' in name))
            assert f'{name}: job {job} (afterok:{submitted[upstream]})' in scenario.first
            # it started only after its pretraining job had ended
            start = scontrol(job, scenario.env)['StartTime']
            assert start >= scontrol(submitted[upstream], scenario.env)['EndTime']


def test_submitting_again_submits_nothing_new(scenario):
    assert '0 jobs submitted; 0 runs already done, 4 already queued' in scenario.second


def test_a_requeued_job_resumes_to_the_weights_of_an_uninterrupted_run(scenario, local_suite):
    run = scenario.work_dir / REQUEUED
    (job,) = job_ids(run)
    assert scontrol(job, scenario.env)['Restarts'] == '1'
    log = (run / 'slurm' / f'{job}_0_log.out').read_text()
    # killed mid-training (a requeued step gets a few seconds), resumed from a checkpoint
    # before the end
    assert 'restart 1' in log
    resumed_at = int(re.search(r'resumed epoch: 0, iter: (\d+)', log).group(1))
    assert 10 <= resumed_at < SEG_ITERS
    resumed = torch.load(run / f'iter_{SEG_ITERS}.pth')['state_dict']
    uninterrupted = torch.load(local_suite.work_dir / REQUEUED / f'iter_{SEG_ITERS}.pth'
                               )['state_dict']
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)


def test_a_killed_job_shows_as_failed_and_only_it_is_run_again(scenario):
    # --wait returned once nothing was queued, and tabulated what had finished
    assert scenario.waited_code == 1
    done, queued = map(int, re.search(r'0 jobs submitted; (\d+) runs? already done, (\d+) '
                                      r'already queued', scenario.waited).groups())
    assert done + queued == 4
    assert f'1 run did not finish: {KILLED}' in scenario.waited
    assert f'Not finished (1), not in the table:\n- {KILLED}' in scenario.waited
    seg = next(line for line in scenario.waited.splitlines() if '| mIoU (last) |' in line)
    assert seg.count('(n=1)') == 1  # the plain arm; the +CB arm is empty
    line = next(line for line in scenario.status.splitlines() if KILLED in line)
    assert line.startswith('failed') and f'job {scenario.killed_job}' in line
    log = Path(line.split(' log ')[1].split(' (')[0])
    assert log.is_file() and log.name.startswith(scenario.killed_job)
    assert 'Slurm: CANCELLED' in line and '3 done' in scenario.status
    assert '1 job submitted; 3 runs already done, 0 already queued' in scenario.third
    assert re.findall(r'submitted (\S+): job', scenario.third) == [KILLED]


def test_the_table_equals_the_table_of_the_same_suite_run_locally(scenario, local_suite):
    slurm = json.loads((scenario.work_dir / 'results.json').read_text())
    local = {(r['task'], r['metric']): r for r in
             json.loads((local_suite.work_dir / 'results.json').read_text())}
    assert {(r['task'], r['metric']) for r in slurm} == {
        ('classification', 'accuracy/top1'), ('segmentation', 'mIoU')}
    for row in slurm:  # seed 0 of the local suite's two
        other = local[(row['task'], row['metric'])]
        for key in ('control_values', 'treatment_values'):
            assert row[key] == other[key][:1], (row['metric'], key)
        for column in ('control_weights', 'treatment_weights'):  # each arm's source is named
            # (its hash: the file's bytes, which hold the run's own paths and times besides the
            # same weights)
            assert row[column].split(' (')[0] == other[column].split(' (')[0]
    assert (scenario.work_dir / 'report.md').is_file()


# ---- jobs of several tasks and nodes ----------------------------------------------------------

TWO_TASKS = ['--launcher', 'slurm', '--gpus-per-node', 0, '--cpus-per-task', 1,
             '--time-min', 30, '--max-requeues', 2, '--poll-seconds', 1]


@pytest.fixture(scope='module')
def multi_task(cluster, two_process_reference, smoke_cwd):
    """The smallest run as 2 tasks on 1 node; the same, requeued after its first checkpoint;
    as 1 task on each of 2 nodes. Each is a suite of one run through the suite's Slurm
    executor."""
    cwd, suite = smoke_cwd, two_process_reference.suite
    name = two_process_reference.run.name
    out = SimpleNamespace(name=name, env=cluster)
    shapes = dict(one_node=['--nodes', 1, '--tasks-per-node', 2],
                  requeued=['--nodes', 1, '--tasks-per-node', 2],
                  two_nodes=['--nodes', 2, '--tasks-per-node', 1])
    for shape, args in shapes.items():
        work_dir = cwd / 'work_dirs' / f'slurm_{shape}'
        command = suite_command(suite, work_dir, *TWO_TASKS, *args)
        if shape == 'requeued':  # submitted, then requeued once its first checkpoint is whole
            in_process(command[2:], cwd, cluster)
            marker = work_dir / name / 'last_checkpoint'
            wait_until(lambda: marker.exists() and
                       marker.read_text().strip().endswith('epoch_1.pth'), 'epoch_1.pth')
            (job,) = job_ids(work_dir / name)
            requeue(job, cluster)
        console = in_process(command[2:] + ['--wait'], cwd, cluster)
        run_dir = RunDir(work_dir / name)
        (job,) = job_ids(run_dir.path)
        setattr(out, shape, SimpleNamespace(
            console=console, run_dir=run_dir, job=job,
            task_logs=[job_paths(run_dir.path, job, task).stdout.read_text() for task in (0, 1)]))
    # and by hand: tools/slurm_train.sh on a CPU partition, two gloo tasks
    planned = two_process_reference.run
    out.srun_dir = cwd / 'work_dirs' / 'slurm_train_sh'
    srun = subprocess.run(
        ['bash', REPO / 'tools' / 'slurm_train.sh', 'debug', 'cb_by_hand', planned.config,
         '--work-dir', out.srun_dir, '--cfg-options', *cfg_options(planned)],
        cwd=cwd, capture_output=True, text=True, timeout=600,
        env={**os.environ, **cluster, 'GPUS': '2', 'GPUS_PER_NODE': '0', 'CPUS_PER_TASK': '1',
             'PYTHON': sys.executable, 'OMP_NUM_THREADS': '1'})
    out.srun = srun
    return out


def task_nodes(task_logs: list, node_list: str) -> set:
    """The nodes the tasks of a 2-task job ran on, as each task's log line says (``task T of 2
    on node N of NODE_LIST``, ``node_list`` a pattern of the job's node list)."""
    nodes = set()
    for task, log in enumerate(task_logs):
        found = re.search(rf'task {task} of 2 on node (n\d) of {node_list}', log)
        assert found, log[-3000:]
        nodes.add(found.group(1))
    return nodes


def test_a_two_task_job_is_one_run_of_two_processes_with_the_weights_of_dist_train(
        multi_task, two_process_reference):
    one_node = multi_task.one_node
    assert len(task_nodes(one_node.task_logs, r'n\d\n')) == 1  # both tasks on one node
    assert 'gloo backend, rank 0 of 2' in one_node.task_logs[0]
    record = one_node.run_dir.record
    assert record.cost.processes == 2 and record.launcher == 'pytorch'
    assert_same_weights(state_dict(record.final_checkpoint),
                        state_dict(two_process_reference.checkpoint))


def test_a_requeued_two_task_job_resumes_to_the_same_weights(multi_task, two_process_reference):
    requeued = multi_task.requeued
    assert scontrol(requeued.job, multi_task.env)['Restarts'] == '1'
    for task, log in enumerate(requeued.task_logs):
        assert 'restart 1' in log and f'task {task} of 2' in log
    assert 'resumed epoch: 1' in requeued.task_logs[0]
    assert_same_weights(state_dict(requeued.run_dir.record.final_checkpoint),
                        state_dict(two_process_reference.checkpoint))


def test_one_task_on_each_of_two_nodes_gives_the_same_weights(multi_task,
                                                              two_process_reference):
    two_nodes = multi_task.two_nodes
    assert task_nodes(two_nodes.task_logs, r'n\[1-2\]') == {'n1', 'n2'}  # a node each
    assert 'gloo backend, rank 0 of 2' in two_nodes.task_logs[0]
    assert_same_weights(state_dict(two_nodes.run_dir.record.final_checkpoint),
                        state_dict(two_process_reference.checkpoint))


def test_slurm_train_sh_runs_gloo_tasks_on_a_cpu_partition(multi_task, two_process_reference):
    srun = multi_task.srun
    assert srun.returncode == 0, srun.stdout[-3000:] + srun.stderr[-3000:]
    assert 'CPU distributed run (slurm): gloo backend, rank 0 of 2' in srun.stdout + srun.stderr
    assert_same_weights(state_dict(multi_task.srun_dir / 'epoch_2.pth'),
                        state_dict(two_process_reference.checkpoint))
