"""``tools/run_suite.py`` / ``cb-run-suite``: plan a suite, carry it out, report it."""
import argparse
import os.path as osp
import sys
from pathlib import Path
from typing import Dict, List, Optional

from .console import Console, capture_output, console_stream
from .plan import SUITES, Plan, SuiteError, load_plan

LAUNCHERS = ('none', 'pytorch', 'slurm')
ATTENTION_IMAGES = 8


def missing_inputs(plan: Plan) -> List[str]:
    """Data and pretrained files the runs read that are not there (relative to the current
    directory), each with the configs that need it. A checkpoint that an upstream run of the plan
    will write is not missing."""
    from mmengine.config import Config
    needed_by: Dict[str, List[str]] = {}
    configs = {}
    for run in plan.runs:
        configs.setdefault(run.config, []).append(run)
    for config, runs in sorted(configs.items()):
        cfg = Config.fromfile(config)
        wanted = []
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            dataset = (cfg.get(loader) or {}).get('dataset') or {}
            while 'dataset' in dataset:
                dataset = dataset['dataset']
            root = dataset.get('data_root', '')
            if dataset.get('ann_file'):
                wanted.append(osp.join(root, dataset['ann_file']))
            prefix = dataset.get('data_prefix') or dataset.get('split') or {}
            wanted += [osp.join(root, p) for p in
                       (prefix.values() if isinstance(prefix, dict) else [prefix])]
        for evaluator in ('val_evaluator', 'test_evaluator'):
            if isinstance(cfg.get(evaluator), dict) and cfg[evaluator].get('ann_file'):
                wanted.append(cfg[evaluator]['ann_file'])
        for run in runs:
            if run.weights is not None:
                if run.weights.file:
                    wanted.append(run.weights.file)
                continue
            init = (cfg.model.get('backbone') or {}).get('init_cfg') or {}
            if init.get('type') == 'Pretrained':
                wanted.append(init['checkpoint'])
        for path in sorted(set(map(osp.normpath, wanted))):
            if not osp.exists(path):
                needed_by.setdefault(path, []).append(Path(config).name)
    return [f'{path}  (needed by {len(configs)} config{"s" * (len(configs) > 1)}, e.g. '
            f'{configs[0]})' for path, configs in sorted(needed_by.items())]


def finish(plan: Plan, console: Console, target_gain: Optional[float]) -> int:
    """Measure the finished runs' attention, then tabulate and report whatever finished (the
    unfinished runs are listed); 0 if anything tabulated."""
    from ..analysis.report import analyse, write_outputs
    from ..analysis.sources import subjects_from_work_dirs
    from ..results.outputs import write_suite_outputs
    from .job import is_done
    subjects, _ = subjects_from_work_dirs([plan.root])
    if subjects:
        console.line(f'attention analysis: {len(subjects)} checkpoints x {ATTENTION_IMAGES} '
                     'validation images')
        write_outputs(analyse(subjects, max_images=ATTENTION_IMAGES, progress=False),
                      plan.root / 'attention')
    written, tabulated = write_suite_outputs(
        plan.root, pending=[r.name for r in plan.runs if not is_done(r)],
        target_gain=target_gain, title=Path(plan.suite_file).stem)
    console.line(written['results.md'].read_text())
    console.line(f'report: {written["report.md"]}; also written: '
                 + ', '.join(str(p) for name, p in written.items() if name != 'report.md'))
    return 0 if tabulated else 1


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Run a benchmark suite (pretraining pairs, then fine-tuning pairs x seeds, '
        'each arm from its own checkpoint) and report the gains of +CB over plain.')
    parser.add_argument('suite', nargs='?', default=str(SUITES / 'smoke.py'),
                        help='suite file (default: the CPU smoke preset)')
    parser.add_argument('--work-dir', help='where the runs and the report go '
                        '(default: work_dirs/suite_<suite name>)')
    parser.add_argument('--dry-run', action='store_true',
                        help='print what would run (commands, or sbatch options and dependencies) '
                        'and what is missing; touch nothing')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none',
                        help='none: in this process; pytorch: tools/dist_train.sh per run; slurm: '
                        'one Slurm job per run, submitted at once (submitit)')
    parser.add_argument('--gpus', type=int, default=8,
                        help='processes per run with --launcher pytorch')
    parser.add_argument('--jobs', type=int,
                        help='runs at a time with --launcher none (default: one per core up to '
                        'two on a CPU, one with CUDA)')
    parser.add_argument('--threads', type=int,
                        help='CPU threads per run with --launcher none (default: cores / jobs); '
                        'the numbers depend on it')
    parser.add_argument('--verbose', action='store_true',
                        help="show every run's own output (mmengine's log, warnings) here")
    parser.add_argument('--target-gain', type=float, default=0.5,
                        help='the gain (metric points) the power figures count seeds for')
    slurm = parser.add_argument_group('Slurm (--launcher slurm; also from the suite file\'s '
                                      'slurm = dict(...))')
    slurm.add_argument('--status', action='store_true',
                       help='print one line per run (state, job, iteration, log); submit nothing')
    slurm.add_argument('--wait', action='store_true',
                       help='after submitting, wait for the jobs, then report what finished')
    slurm.add_argument('--partition')
    slurm.add_argument('--nodes', type=int)
    slurm.add_argument('--gpus-per-node', type=int)
    slurm.add_argument('--tasks-per-node', type=int)
    slurm.add_argument('--cpus-per-task', type=int)
    slurm.add_argument('--mem-gb', type=float)
    slurm.add_argument('--time-min', type=int, help='time limit per job; a job that reaches it is '
                       'requeued and resumes')
    slurm.add_argument('--account')
    slurm.add_argument('--qos')
    slurm.add_argument('--constraint')
    slurm.add_argument('--sbatch', nargs='+', default=[], metavar='KEY=VALUE',
                       help='other sbatch options, e.g. --sbatch exclusive=1 reservation=r')
    slurm.add_argument('--max-requeues', type=int,
                       help='requeues (preemption, time limit) allowed per job (default 3)')
    slurm.add_argument('--poll-seconds', type=float, default=30.0,
                       help='with --wait: how often to ask Slurm (default 30)')
    return parser.parse_args(argv)


def slurm_resources(args: argparse.Namespace, suite_file: str):
    from mmengine.config import Config

    from .slurm import SlurmResources
    options = dict(Config.fromfile(suite_file).get('slurm') or {})
    for key in ('partition', 'nodes', 'gpus_per_node', 'tasks_per_node', 'cpus_per_task',
                'mem_gb', 'time_min', 'account', 'qos', 'constraint', 'max_requeues'):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    extra = dict(options.pop('extra', {}))
    for item in args.sbatch:
        key, sep, value = item.partition('=')
        if not sep:
            raise SuiteError(f"--sbatch {item!r}: give KEY=VALUE, e.g. exclusive=1")
        extra[key] = value
    unknown = set(options) - set(SlurmResources.__dataclass_fields__)
    if unknown:
        raise SuiteError(f"suite file '{suite_file}': slurm has unknown keys {sorted(unknown)}; "
                         f'known: {sorted(SlurmResources.__dataclass_fields__)}')
    return SlurmResources(**options, extra=extra)


def main(argv: Optional[List[str]] = None) -> int:
    from ..launch import forget_tools_dir
    forget_tools_dir()
    args = parse_args(argv)
    console = Console(console_stream())
    try:
        plan = load_plan(args.suite, args.work_dir)
        resources = slurm_resources(args, args.suite) if args.launcher == 'slurm' else None
        if args.launcher == 'slurm':
            from .slurm import require_slurm
            require_slurm()
    except (SuiteError, FileNotFoundError, RuntimeError) as err:
        console.line(f'error: {err}')
        return 2
    if args.status:
        from .slurm import print_status, status
        print_status(status(plan), console)
        return 0
    if plan.smoke_data and not args.dry_run:
        from ..data import make_smoke_data
        make_smoke_data()
    upstream = sum(r.stage == 'upstream' for r in plan.runs)
    console.line(f'suite {args.suite}: {len(plan.runs)} runs ({upstream} pretraining, '
                 f'{len(plan.runs) - upstream} fine-tuning: '
                 f'{len({r.config for r in plan.runs if r.stage == "downstream"})} configs x '
                 f'{len(plan.seeds)} seeds); work dir {plan.root}')
    missing = missing_inputs(plan)
    if args.dry_run:
        _dry_run(args, plan, console, resources)
        if missing:
            console.line('missing inputs (a real run stops before starting anything):\n  '
                         + '\n  '.join(missing))
        return 0
    if missing:
        console.line('missing inputs; nothing was started:\n  ' + '\n  '.join(missing)
                     + "\nSee the README's 'Pretrained weights' and data sections.")
        return 1
    if args.verbose:
        return _run(args, plan, console, resources)
    console.line(f"each run's output goes to its work dir's suite_run.log; the suite's own "
                 f'to {plan.root / "suite.log"}')
    with capture_output(plan.root / 'suite.log'):
        return _run(args, plan, console, resources)


def _run(args, plan: Plan, console: Console, resources) -> int:
    """Carry the plan out with the chosen executor, then report."""
    failed: List[str] = []
    if args.launcher == 'none':
        from .local import run_local
        failed = run_local(plan, console, args.jobs, args.threads, args.verbose)
    elif args.launcher == 'pytorch':
        from .torchrun import run_torchrun
        failed = run_torchrun(plan, console, args.gpus)
    else:
        from .slurm import print_status, submit, wait
        submit(plan, resources, console)
        if not args.wait:
            console.line(f'check with: {sys.argv[0]} {args.suite} --launcher slurm --status '
                         '(or --wait to block until the jobs end and report)')
            return 0
        states = wait(plan, console, args.poll_seconds)
        failed = [s.run.name for s in states if s.state != 'done']
        print_status([s for s in states if s.state != 'done'], console)
    code = finish(plan, console, args.target_gain)
    if failed:
        console.line(f'{len(failed)} run{"s" * (len(failed) > 1)} did not finish: '
                     + ', '.join(failed))
        return 1
    return code


def _dry_run(args, plan: Plan, console: Console, resources) -> None:
    """What would run; and, where the work dir already holds runs of the suite (a pilot), the
    gains the planned seeds can detect."""
    from .job import is_done
    if args.launcher == 'slurm':
        from .slurm import submit
        submit(plan, resources, console, dry_run=True)
    else:
        from .torchrun import commands, show
        for run in plan.runs:
            status = ('done' if is_done(run) else
                      'resume' if (run.work_dir / 'last_checkpoint').exists() else 'new')
            pretrained = run.weights.describe() if run.weights else None
            for cmd in commands(run, args.launcher, pretrained):
                console.line(f'[{status}] {show(cmd)}')
    if plan.root.is_dir():
        from ..results import build_table, collect_runs
        from ..results.report import power_lines
        lines = power_lines(build_table(*collect_runs([plan.root])).rows, args.target_gain,
                            seeds=len(plan.seeds))
        if len(lines) > 2:
            console.line(f'power, from the runs already in {plan.root} (a pilot), for '
                         f'{len(plan.seeds)} seeds:\n' + '\n'.join(lines))
