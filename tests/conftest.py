"""Fixtures: the generated data, and the expensive end-to-end runs that several test files read.

``local_suite`` runs the default suite, reduced (pretraining for 2 epochs, fine-tuning for 40 and
20 iterations, two seeds), once per session through ``tools/run_suite.py``; the suite, upstream,
report, attention, lifecycle and Slurm tests all read its work dir. ``arms_suite`` runs the arms
smoke suite (plain, +CB, +reg4, +CB+reg4), reduced likewise, from the default suite's plain and +CB
pretraining runs. Helpers are in helpers.py.
"""
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import reduced_suite, run, suite_command

# as every tool does: registries, checkpoint allowlist, the fast base-config lookup
import cb_transfer  # noqa: F401
from cb_transfer.data import make_smoke_data

END_TO_END = {'smoke_cwd', 'local_suite', 'two_process_reference', 'arms_suite'}


def pytest_collection_modifyitems(items):
    """Tests that train (they use the shared end-to-end fixtures) are marked ``e2e``:
    ``make test-fast`` leaves them out for the edit loop."""
    for item in items:
        if END_TO_END & set(getattr(item, 'fixturenames', ())):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope='session')
def smoke_cwd(tmp_path_factory) -> Path:
    """A working directory with the generated data where the smoke configs look for it."""
    root = tmp_path_factory.mktemp('smoke')
    make_smoke_data(root / 'data' / 'smoke')
    return root


@pytest.fixture(scope='session')
def local_suite(smoke_cwd) -> SimpleNamespace:
    """The reduced default suite, run once by the local executor (two runs at a time, one
    thread each), with the console captured as a user would see it."""
    suite = reduced_suite(smoke_cwd)
    work_dir = smoke_cwd / 'work_dirs' / 'reduced'
    proc = run(suite_command(suite, work_dir, '--jobs', 2, '--threads', 1), smoke_cwd)
    return SimpleNamespace(cwd=smoke_cwd, suite=suite, work_dir=work_dir, console=proc.stdout,
                           stderr=proc.stderr)


@pytest.fixture(scope='session')
def two_process_reference(smoke_cwd) -> SimpleNamespace:
    """The reduced suite's smallest run trained by tools/dist_train.sh with two gloo processes
    (one thread each), with the options the suite gives it: the weights every multi-process
    launcher must end with."""
    from helpers import REPO, cfg_options, one_run_suite

    from cb_transfer.suite.plan import load_plan
    suite = one_run_suite(smoke_cwd)
    (planned,) = load_plan(str(suite), str(smoke_cwd / 'work_dirs' / 'unused')).runs
    work_dir = smoke_cwd / 'two_processes'
    env = dict(GPUS='2', PORT='29531', PYTHON=sys.executable, OMP_NUM_THREADS='1')
    proc = run(['bash', REPO / 'tools' / 'dist_train.sh', planned.config, '--work-dir', work_dir,
                '--cfg-options', *cfg_options(planned)], smoke_cwd, env=env)
    return SimpleNamespace(suite=suite, run=planned, work_dir=work_dir,
                           checkpoint=work_dir / 'epoch_2.pth', log=proc.stdout + proc.stderr)


@pytest.fixture(scope='session')
def arms_suite(smoke_cwd, local_suite) -> SimpleNamespace:
    """The arms smoke suite by its preset name, reduced (pretraining 2 epochs, UPerNet 40
    iterations; one pair, two seeds), run once by the local executor. Its plain and +CB
    pretraining runs are the reduced default suite's (the same configs, options and seed,
    checked here), copied in as finished runs: the suite trains the other two arms."""
    from helpers import arms_suite_file, copy_runs

    from cb_transfer.suite.plan import Stage, load_plan
    suite = arms_suite_file(smoke_cwd)
    work_dir = smoke_cwd / 'work_dirs' / 'arms'
    theirs = {r.name: r for r in load_plan(str(local_suite.suite), str(local_suite.work_dir)).runs}
    mine = [r for r in load_plan(str(suite), str(work_dir)).runs
            if r.stage is Stage.PRETRAINING and r.name in theirs]
    assert len(mine) == 2 and all((r.config, r.overrides) == (theirs[r.name].config,
                                                               theirs[r.name].overrides)
                                  for r in mine)
    shared = [r.name for r in mine]
    copy_runs(local_suite.work_dir, work_dir, *shared)
    proc = run(suite_command(suite, work_dir, '--jobs', 2, '--threads', 1), smoke_cwd)
    return SimpleNamespace(work_dir=work_dir, console=proc.stdout)
