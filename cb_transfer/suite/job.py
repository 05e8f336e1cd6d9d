"""One planned run's work, whichever executor carries it out: train, test, record.

The work: train (resuming from the newest readable checkpoint when the work dir has one), test the
checkpoint training ended with, and write the run's record (:class:`cb_transfer.run_dir.RunRecord`)
with :func:`record_run`, the one writer of records, the same in every executor (in this process,
a worker, each torchrun or Slurm task: rank 0 writes, after a barrier). A downstream run that
starts from an upstream run reads that run's record when it starts, not when it is planned or
submitted, so that a Slurm job queued behind its upstream job picks up the checkpoint the upstream
job ended with.

``python -m cb_transfer.suite.job SUITE --work-dir ROOT --run-name NAME --launcher pytorch`` is the
same work for one run of a suite, in each process that torchrun starts.
"""
import argparse
import os
import socket
from pathlib import Path
from typing import List, Optional, Sequence

from ..experiment import arm_options
from ..run_dir import RunDir, RunRecord, now
from .plan import PlannedRun, load_plan


def upstream_checkpoint(run: PlannedRun) -> str:
    """The checkpoint the upstream run that ``run`` starts from ended with (from its record)."""
    record = RunDir(run.weights.work_dir).record
    if record is None:
        raise RuntimeError(f'this run starts from the last checkpoint of the upstream run '
                           f'{run.weights.run} ({run.weights.work_dir}), which has not finished')
    return record.checkpoint


def resolve_weights(run: PlannedRun) -> Optional[str]:
    """The checkpoint file ``run``'s backbone starts from, or None for the config's own."""
    if run.weights is None:
        return None
    if run.weights.file:
        return run.weights.file
    return upstream_checkpoint(run)


def weights_provenance(run: PlannedRun, cfg) -> Optional[dict]:
    """Where the run's backbone started, as data: the file the config loads (path, name,
    SHA-256, whether the model that wrote it used CB) and the planned run that wrote it; None
    when the backbone trains from scratch."""
    from ..models.pretrained import describe_weights
    init = (cfg.model.get('backbone') or {}).get('init_cfg') or {}
    if init.get('type') != 'Pretrained':
        return None
    return dict(describe_weights(init['checkpoint']),
                upstream_run=run.weights.run if run.weights else None)


def record_run(run: PlannedRun, cfg, checkpoint: Path, metrics: dict, iterations: int,
               cost: dict, weights: Optional[dict], launcher: str) -> RunRecord:
    """The run's record, written atomically by rank 0 (the caller has met the other ranks at a
    barrier): the one writer of records."""
    import torch

    from ..launch import rank, world_size
    record = RunRecord(
        name=run.name, suite=run.suite, stage=run.stage, arm=run.arm,
        backbone=arm_options(cfg.to_dict()), protocol=run.protocol, seed=run.seed, pair=run.pair,
        config=run.config, checkpoint=str(checkpoint), iterations=iterations,
        metrics={k: float(v) for k, v in metrics.items()}, weights=weights,
        cost=dict(cost, processes=world_size(),
                  device='cuda' if torch.cuda.is_available() else 'cpu'),
        launcher=launcher, host=socket.gethostname(), finished=now())
    if rank() == 0:
        RunDir(run.work_dir).write_record(record)
    return record


def execute(run: PlannedRun, launcher: str = 'none', hooks: Sequence = (),
            log_level: Optional[str] = None) -> RunRecord:
    """Train ``run`` (resuming where it stopped), test its last checkpoint, record it; or, for a
    robustness evaluation, evaluate the checkpoint of the run it follows (:func:`robustness`).

    Args:
        launcher: mmengine's launcher: 'none' in this process, 'pytorch' under torchrun,
            'slurm' in a Slurm job's tasks.
        hooks: Extra mmengine hooks (instances) for training, such as the console's progress.
        log_level: Override the config's log level.

    Returns:
        The run's record.
    """
    if run.stage == 'robustness':
        return robustness(run, launcher, hooks, log_level)
    from ..launch import barrier, load_config, test, train
    pretrained = resolve_weights(run)

    def config():
        cfg = load_config(run.config, str(run.work_dir), run.overrides, launcher,
                          pretrained=pretrained)
        if log_level:
            cfg.log_level = log_level
        return cfg

    cfg = config()
    runner = train(cfg, resume=True, hooks=hooks)
    barrier()  # rank 0 saved the last checkpoint
    checkpoint = RunDir(run.work_dir).last_checkpoint()
    metrics = test(config(), str(checkpoint))
    record = record_run(run, cfg, checkpoint, metrics, runner.iter,
                        dict(seconds_per_iter=RunDir(run.work_dir).seconds_per_iter(),
                             iterations=int(runner.iter)),
                        weights_provenance(run, cfg), launcher)
    barrier()  # nobody reads the record before it is whole
    return record


def robustness(run: PlannedRun, launcher: str = 'none', hooks: Sequence = (),
               log_level: Optional[str] = None) -> RunRecord:
    """The evaluation-only stage: the final checkpoint of the run ``run`` follows, evaluated
    clean and under each corruption and severity (resuming where it stopped), recorded with
    that run (``<its work dir>/robustness``)."""
    import time

    from ..launch import barrier, load_config
    from ..models.pretrained import describe_weights
    from ..robustness.evaluate import evaluate_robustness
    start = time.time()
    checkpoint = upstream_checkpoint(run)
    cfg = load_config(run.config, str(run.work_dir), run.overrides, launcher)
    cfg.model.backbone.init_cfg = None  # the whole model comes from the checkpoint
    if log_level:
        cfg.log_level = log_level
    run.work_dir.mkdir(parents=True, exist_ok=True)
    summary = evaluate_robustness(cfg, checkpoint, run.work_dir, run.corruptions,
                                  run.severities, hooks)
    record = record_run(run, cfg, Path(checkpoint), summary, 0,
                        dict(seconds=time.time() - start,
                             evaluations=1 + len(run.corruptions) * len(run.severities)),
                        dict(describe_weights(checkpoint), upstream_run=run.after), launcher)
    barrier()
    return record


def main(argv: Optional[List[str]] = None) -> None:
    """One run of a suite, in each process torchrun starts (the torchrun executor's command)."""
    from ..launch import distributed_session, forget_tools_dir
    forget_tools_dir()
    parser = argparse.ArgumentParser(description='Carry out one run of a suite (the torchrun '
                                     "executor's command, in each process)")
    parser.add_argument('suite')
    parser.add_argument('--work-dir', required=True)
    # not --run: torchrun, which passes these on, would take it for its own --run-path
    parser.add_argument('--run-name', required=True, help="the run's name in the plan")
    parser.add_argument('--launcher', default='pytorch', choices=('none', 'pytorch', 'slurm'))
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', '0')
    run = load_plan(args.suite, args.work_dir).run(args.run_name)
    with distributed_session():
        execute(run, launcher=args.launcher)


if __name__ == '__main__':
    main()
