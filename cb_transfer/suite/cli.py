"""``tools/run_suite.py`` / ``cb-run-suite``: plan a suite, carry it out, report it."""
import argparse
import sys
from typing import List, Optional

from ..run_dir import RunDir
from .console import Console, capture_output, console_stream
from .loop import Executor, carry_out, dry_run, show_status
from .plan import Plan, SuiteError, load_plan

LAUNCHERS = ('none', 'pytorch', 'slurm')
ATTENTION_IMAGES = 8


def finish(plan: Plan, console: Console, target_gain: Optional[float]) -> int:
    """Measure the finished runs' attention, then tabulate and report what finished (the runs
    without a record are listed, never tabulated); 0 if anything tabulated."""
    from ..analysis.report import analyse, write_outputs
    from ..analysis.sources import subjects_from_runs
    from ..results.outputs import write_suite_outputs
    from ..results.runs import read_run_dirs
    finished = [r for r in plan.runs if RunDir(r.work_dir).done]
    # a robustness evaluation is read with the run it evaluates
    runs, problems = read_run_dirs([r.work_dir for r in finished if r.stage.trains])
    subjects, _ = subjects_from_runs(runs)
    if subjects:
        console.line(f'attention analysis: {len(subjects)} checkpoints x {ATTENTION_IMAGES} '
                     'validation images')
        write_outputs(analyse(subjects, max_images=ATTENTION_IMAGES, progress=False),
                      plan.root / 'attention')
    written, tabulated = write_suite_outputs(
        plan.root, runs, problems, pending=[r.name for r in plan.runs if r not in finished],
        target_gain=target_gain, title=plan.name)
    console.line(written['results.md'].read_text())
    console.line(f'report: {written["report.md"]}; also written: '
                 + ', '.join(str(p) for name, p in written.items() if name != 'report.md'))
    return 0 if tabulated else 1


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Run a benchmark suite (pretraining pairs, then fine-tuning pairs x seeds, '
        'each arm from its own checkpoint) and report the gains of +CB over plain.')
    parser.add_argument('suite', nargs='?', default='smoke',
                        help="a preset's name (smoke, full, cb_at_finetune, zoo_check), "
                        "cb_transfer::suites/NAME.py, or a suite file (default: smoke, the CPU "
                        'preset)')
    parser.add_argument('--work-dir', help='where the runs and the report go '
                        '(default: work_dirs/suite_<suite name>)')
    parser.add_argument('--dry-run', action='store_true',
                        help='print what would run (as the chosen launcher would carry it out: '
                        'in this process, torchrun commands, or sbatch options and dependencies) '
                        'and what is missing; touch nothing')
    parser.add_argument('--status', action='store_true',
                        help='print one line per run (state; with Slurm its job, iteration and '
                        'log); run nothing')
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


def slurm_resources(args: argparse.Namespace, plan: Plan):
    """What each Slurm job asks for: the suite file's ``slurm = dict(...)``, then the command
    line."""
    from .slurm import SlurmResources
    options = dict(plan.slurm)
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
        raise SuiteError(f"suite file '{plan.suite_file}': slurm has unknown keys "
                         f'{sorted(unknown)}; known: {sorted(SlurmResources.__dataclass_fields__)}')
    return SlurmResources(**options, extra=extra)


def make_executor(args: argparse.Namespace, plan: Plan) -> Executor:
    """The executor the command line asks for."""
    if args.launcher == 'pytorch':
        from .torchrun import TorchrunExecutor
        return TorchrunExecutor(args.gpus)
    if args.launcher == 'slurm':
        from .slurm import SlurmExecutor, require_slurm
        require_slurm()
        return SlurmExecutor(slurm_resources(args, plan), wait=args.wait,
                             poll_s=args.poll_seconds)
    from .local import LocalExecutor
    return LocalExecutor(args.jobs, args.threads, args.verbose)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    console = Console(console_stream())
    try:
        plan = load_plan(args.suite, args.work_dir)
        executor = make_executor(args, plan)
    except (SuiteError, FileNotFoundError, RuntimeError) as err:
        console.line(f'error: {err}')
        return 2
    if args.status:
        show_status(plan, executor, console)
        return 0
    if plan.smoke_data and not args.dry_run:
        from ..data import make_smoke_data
        make_smoke_data()
    console.line(f'suite {args.suite}: {plan.summary()}; work dir {plan.root}')
    missing = plan.missing_inputs()
    if args.dry_run:
        dry_run(plan, executor, console)
        _pilot_power(plan, console, args.target_gain)
        if missing:
            console.line('missing inputs (a real run stops before starting anything):\n  '
                         + '\n  '.join(missing))
        return 0
    if missing:
        console.line('missing inputs; nothing was started:\n  ' + '\n  '.join(missing)
                     + "\nSee the README's 'Pretrained weights' and data sections.")
        return 1
    if args.verbose:
        return _run(executor, plan, console, args)
    console.line(f"each run's output goes to its work dir's suite_run.log; the suite's own "
                 f'to {plan.root / "suite.log"}')
    with capture_output(plan.root / 'suite.log'):
        return _run(executor, plan, console, args)


def _run(executor: Executor, plan: Plan, console: Console, args) -> int:
    """Carry the plan out, then report."""
    outcome = carry_out(plan, executor, console)
    if not outcome.waited:
        console.line(f'check with: {sys.argv[0]} {args.suite} --launcher {args.launcher} '
                     '--status (or --wait to block until the jobs end and report)')
        return 0
    failed = outcome.unfinished
    code = finish(plan, console, args.target_gain)
    if failed:
        console.line(f'{len(failed)} run{"s" * (len(failed) > 1)} did not finish: '
                     + ', '.join(failed))
        return 1
    return code


def _pilot_power(plan: Plan, console: Console, target_gain: float) -> None:
    """Where the work dir already holds finished runs of the suite (a pilot): the gains the
    planned seeds can detect."""
    from ..results.report import design_lines
    from ..results.runs import read_run_dirs
    from ..results.table import build_table
    finished = [r.work_dir for r in plan.runs if r.stage.trains and RunDir(r.work_dir).done]
    if not finished:
        return
    lines = design_lines(build_table(*read_run_dirs(finished)).rows, target_gain,
                         pairs=len(plan.pairs), seeds=len(plan.seeds))
    if len(lines) > 2:
        console.line(f'design, from the runs already in {plan.root} (a pilot), for the planned '
                     f'{len(plan.pairs)} pairs x {len(plan.seeds)} seeds:\n' + '\n'.join(lines))
