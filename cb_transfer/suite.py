"""The main job: run a matrix of plain/+CB config pairs x seeds, then tabulate the gains.

A suite file (``configs/suites/*.py``, an mmengine config) names::

    pairs = [(PLAIN_CONFIG, CB_CONFIG), ...]   # paths relative to the repository
    seeds = [0, 1, 2]
    cfg_options = {CONFIG: {key: value}}      # optional overrides ('*': every config)
    smoke_data = True                          # optional: generate data/smoke first

Each run trains in ``<suite work dir>/<config name>/seed<N>`` through the same functions as
``tools/train.py`` and ``tools/test.py`` (in this process), or, with a launcher, through
``tools/dist_train.sh`` / ``tools/slurm_train.sh``. A finished run leaves ``suite_done.json`` and is
skipped when the suite runs again; an interrupted one resumes from its last checkpoint.
"""
import json
import os
import os.path as osp
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from mmengine.config import Config

REPO = Path(__file__).resolve().parents[1]
DONE = 'suite_done.json'
# Stands for the checkpoint a training run ends with, known once it has ended.
LAST_CHECKPOINT = '<last checkpoint>'


@dataclass
class SuiteRun:
    config: str
    seed: int
    work_dir: Path
    cfg_options: dict

    @property
    def name(self) -> str:
        return f'{Path(self.config).stem} seed {self.seed}'

    @property
    def done(self) -> bool:
        return (self.work_dir / DONE).exists()

    @property
    def overrides(self) -> dict:
        """The config keys this run sets: the suite's options and its seed."""
        return {**self.cfg_options, 'randomness.seed': self.seed}

    def options(self) -> List[str]:
        """``overrides`` as ``--cfg-options`` arguments."""
        return [f'{k}={json.dumps(v) if not isinstance(v, str) else v}'
                for k, v in self.overrides.items()]


def load_suite(path: str, work_dir: Optional[str] = None) -> tuple:
    """Read a suite file; returns (runs, suite work dir, suite config)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f"suite file '{path}' not found (presets: "
                                f"{', '.join(p.stem for p in (REPO / 'configs' / 'suites').glob('*.py'))})")
    suite = Config.fromfile(path)
    for key in ('pairs', 'seeds'):
        if key not in suite:
            raise ValueError(f"suite file '{path}' has no '{key}'")
    root = Path(work_dir or suite.get('work_dir') or f'work_dirs/suite_{Path(path).stem}')
    overrides = suite.get('cfg_options') or {}
    runs = []
    for pair in suite.pairs:
        if len(pair) != 2:
            raise ValueError(f"suite file '{path}': each pair is (plain config, +CB config), "
                             f'got {pair!r}')
        for config in pair:
            full = config if osp.isabs(config) else str(REPO / config)
            if not osp.isfile(full):
                raise FileNotFoundError(f"config '{config}' named in suite file '{path}' not found")
            options = {**overrides.get('*', {}), **overrides.get(config, {})}
            for seed in suite.seeds:
                runs.append(SuiteRun(full, int(seed), root / Path(config).stem / f'seed{seed}',
                                     options))
    return runs, root, suite


def missing_inputs(runs: List[SuiteRun]) -> List[str]:
    """Data and pretrained files the runs' configs read that are not there (relative to the
    current directory), each with the configs that need it."""
    needed_by: Dict[str, List[str]] = {}
    for config in sorted({r.config for r in runs}):
        cfg = Config.fromfile(config)
        wanted = []
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            dataset = (cfg.get(loader) or {}).get('dataset') or {}
            while 'dataset' in dataset:
                dataset = dataset['dataset']
            root = dataset.get('data_root', '')
            if dataset.get('ann_file'):
                wanted.append(osp.join(root, dataset['ann_file']))
            wanted += [osp.join(root, p) for p in (dataset.get('data_prefix') or {}).values()]
        for evaluator in ('val_evaluator', 'test_evaluator'):
            if isinstance(cfg.get(evaluator), dict) and cfg[evaluator].get('ann_file'):
                wanted.append(cfg[evaluator]['ann_file'])
        init = (cfg.model.get('backbone') or {}).get('init_cfg') or {}
        if init.get('type') == 'Pretrained':
            wanted.append(init['checkpoint'])
        for path in sorted(set(map(osp.normpath, wanted))):
            if not osp.exists(path):
                needed_by.setdefault(path, []).append(Path(config).name)
    return [f'{path}  (needed by {len(configs)} config{"s" * (len(configs) > 1)}, e.g. '
            f'{configs[0]})' for path, configs in sorted(needed_by.items())]


def _max_iters(run: SuiteRun) -> int:
    cfg = Config.fromfile(run.config)
    if run.cfg_options:
        cfg.merge_from_dict(run.cfg_options)
    return int(cfg.train_cfg.get('max_iters') or cfg.train_cfg.get('max_epochs') or 1)


def run_in_process(run: SuiteRun, label: str, progress: dict, verbose: bool) -> None:
    """Train (resuming if a checkpoint is there), then test the last checkpoint."""
    from .launch import load_config, test, train

    def config():
        cfg = load_config(run.config, str(run.work_dir), run.overrides)
        if not verbose:
            cfg.log_level = 'WARNING'
        return cfg

    cfg = config()
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
        dict(type='cb_transfer.SuiteProgressHook', label=label, **progress)]
    resume = (run.work_dir / 'last_checkpoint').exists()
    runner = train(cfg, resume=resume)
    checkpoint = (run.work_dir / 'last_checkpoint').read_text().strip()
    metrics = test(config(), checkpoint)
    (run.work_dir / DONE).write_text(json.dumps(
        dict(checkpoint=checkpoint, iters=runner.iter,
             metrics={k: float(v) for k, v in metrics.items()}), indent=2))


def launcher_commands(run: SuiteRun, launcher: str,
                      partition: Optional[str]) -> List[List[str]]:
    """The commands that train and test ``run``: tools/train.py and tools/test.py, or the
    distributed launch scripts."""
    tools = REPO / 'tools'
    opts = ['--cfg-options', *run.options()]
    wd = ['--work-dir', str(run.work_dir)]
    resume = ['--resume'] if (run.work_dir / 'last_checkpoint').exists() else []
    checkpoint = LAST_CHECKPOINT
    if launcher == 'none':
        train = [sys.executable, str(tools / 'train.py'), run.config, *wd, *resume, *opts]
        test = [sys.executable, str(tools / 'test.py'), run.config, checkpoint, *wd, *opts]
    elif launcher == 'pytorch':
        train = [str(tools / 'dist_train.sh'), run.config, *wd, *resume, *opts]
        test = [str(tools / 'dist_test.sh'), run.config, checkpoint, *wd, *opts]
    else:
        if not partition:
            raise ValueError('--launcher slurm needs --partition')
        job = f'{Path(run.config).stem}_s{run.seed}'
        train = [str(tools / 'slurm_train.sh'), partition, job, run.config, *wd, *resume, *opts]
        test = None
    return [train] + ([test] if test else [])


def _env(launcher: str, gpus: int) -> Dict[str, str]:
    env = dict(os.environ, PYTHON=sys.executable)
    if launcher != 'none':
        env['GPUS'] = str(gpus)
    return env


def run_suite(suite_file: str, work_dir: Optional[str] = None, dry_run: bool = False,
              launcher: str = 'none', gpus: int = 1, partition: Optional[str] = None,
              verbose: bool = False, out=print) -> int:
    """Run every unfinished run of the suite, then write and print the table. Returns 0, or 1
    when inputs are missing or nothing could be tabulated."""
    runs, root, suite = load_suite(suite_file, work_dir)
    if suite.get('smoke_data') and not dry_run:
        from .data import make_smoke_data
        make_smoke_data()
    missing = missing_inputs(runs)
    todo = [r for r in runs if not r.done]
    out(f'suite {suite_file}: {len(runs)} runs ({len({r.config for r in runs})} configs x '
        f'{len(suite.seeds)} seeds), {len(runs) - len(todo)} finished, {len(todo)} to run; '
        f'work dir {root}')
    if dry_run:
        for run in runs:
            status = 'done' if run.done else 'resume' if (run.work_dir / 'last_checkpoint').exists() \
                else 'new'
            for cmd in launcher_commands(run, launcher, partition):
                out(f'[{status}] ' + ' '.join(shlex.quote(str(c)) for c in cmd))
        if missing:
            out('missing inputs (a real run stops before starting anything):\n  '
                + '\n  '.join(missing))
        return 0
    if missing:
        out('missing inputs; nothing was started:\n  ' + '\n  '.join(missing)
            + "\nSee the README's 'Pretrained weights' and data sections.")
        return 1

    iters = {id(r): _max_iters(r) for r in todo}
    total, before, start = sum(iters.values()), 0, time.time()
    for index, run in enumerate(todo, 1):
        label = f'[{index}/{len(todo)}] {run.name}'
        out(f'{label}: {"resuming" if (run.work_dir / "last_checkpoint").exists() else "starting"}')
        if run.work_dir.exists() and not (run.work_dir / 'last_checkpoint').exists():
            shutil.rmtree(run.work_dir)  # a run that died before its first checkpoint restarts
        if launcher == 'none':
            run_in_process(run, label, dict(suite_start=start, iters_before=before,
                                            iters_total=total), verbose)
        else:
            for cmd in launcher_commands(run, launcher, partition):
                cmd = [c if c != LAST_CHECKPOINT else
                       (run.work_dir / 'last_checkpoint').read_text().strip() for c in cmd]
                subprocess.run(cmd, check=True, env=_env(launcher, gpus))
            (run.work_dir / DONE).write_text(json.dumps(dict(launcher=launcher)))
        before += iters[id(run)]
        out(f'{label}: done')

    return tabulate_suite(root, out)


def tabulate_suite(root: Path, out=print) -> int:
    """Write results.md, results.json and gains.png into the suite's work dir; print the table."""
    from .results import build_table, collect_runs
    from .results.plot import plot_table
    from .results.table import to_json, to_markdown
    table = build_table(*collect_runs([root]))
    markdown = to_markdown(table, reference=True)
    (root / 'results.md').write_text(markdown)
    (root / 'results.json').write_text(to_json(table))
    plot_table(table, str(root / 'gains.png'), curves=True)
    out(markdown)
    out(f'written: {root / "results.md"}, {root / "results.json"}, {root / "gains.png"}')
    tabulated = any(r.plain_mean is not None or r.cb_mean is not None for r in table.rows)
    return 0 if tabulated else 1


def main(argv: Optional[List[str]] = None) -> int:
    import argparse
    from .launch import forget_tools_dir
    forget_tools_dir()
    parser = argparse.ArgumentParser(description='Run a benchmark suite (config pairs x seeds) '
                                     'and tabulate the gains of +CB over plain.')
    parser.add_argument('suite', nargs='?', default=str(REPO / 'configs' / 'suites' / 'smoke.py'),
                        help='suite file (default: the CPU smoke preset)')
    parser.add_argument('--work-dir', help='where the runs and the table go '
                        '(default: work_dirs/suite_<suite name>)')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the commands it would run and what is missing; touch nothing')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='hand each run to tools/dist_train.sh (pytorch) or '
                        'tools/slurm_train.sh (slurm)')
    parser.add_argument('--gpus', type=int, default=8, help='GPUs per run with a launcher')
    parser.add_argument('--partition', help='Slurm partition, with --launcher slurm')
    parser.add_argument('--verbose', action='store_true', help="show mmengine's own log")
    args = parser.parse_args(argv)
    return run_suite(args.suite, args.work_dir, args.dry_run, args.launcher, args.gpus,
                     args.partition, args.verbose)
