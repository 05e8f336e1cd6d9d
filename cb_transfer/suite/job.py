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

from ..record import Cost, Provenance, RunRecord, Weights
from ..run_dir import RunDir, now
from .plan import PlannedRun, Stage, load_plan


def upstream_checkpoint(run: PlannedRun) -> str:
    """The checkpoint the upstream run that ``run`` starts from ended with (from its record)."""
    record = RunDir(run.weights.work_dir).record
    if record is None:
        raise RuntimeError(f'this run starts from the last checkpoint of the upstream run '
                           f'{run.weights.run} ({run.weights.work_dir}), which has not finished')
    return record.final_checkpoint


def resolve_weights(run: PlannedRun) -> Optional[str]:
    """The checkpoint file ``run``'s backbone starts from, or None for the config's own."""
    if run.weights is None:
        return None
    if run.weights.file:
        return run.weights.file
    return upstream_checkpoint(run)


def init_checkpoint(cfg) -> Optional[str]:
    """The checkpoint the backbone of a config loads (``init_cfg``), or None."""
    init = (cfg.model.get('backbone') or {}).get('init_cfg') or {}
    return init['checkpoint'] if init.get('type') == 'Pretrained' else None


def weights_origin(run: PlannedRun, checkpoint: Optional[str]) -> Optional[Weights]:
    """Where the run's backbone started, as data: the file (path, name, SHA-256, what the model
    that wrote it changed) and the planned run that wrote it; None from scratch."""
    if checkpoint is None:
        return None
    from ..models.pretrained import describe_weights
    return Weights(**describe_weights(checkpoint),
                   upstream_run=run.weights.run if run.weights else None)


def provenance(run: PlannedRun, cfg, weights: Optional[Weights]) -> Provenance:
    """What the run is: the plan's facts, and the resolved config's as the tables name them."""
    from ..experiment import identify
    identity = identify(cfg.to_dict())
    return Provenance(
        stage=run.stage.value, protocol=run.protocol, arm=run.arm, pair=run.pair, seed=run.seed,
        weights=weights, change=identity['arm'], backbone=identity['arm_options'],
        experiment=identity['experiment'],
        **{k: identity[k] for k in ('task', 'dataset', 'model', 'arch', 'schedule')})


def record_run(run: PlannedRun, cfg, checkpoint: Path, metrics: dict, iterations: int,
               evaluations: int, cost: dict, weights: Optional[Weights],
               launcher: str) -> RunRecord:
    """The run's record, written atomically by rank 0 (the caller has met the other ranks at a
    barrier): the one writer of records."""
    import torch
    from mmengine.dist import get_rank, get_world_size
    record = RunRecord(
        name=run.name, suite=run.suite, config=run.config,
        provenance=provenance(run, cfg, weights), final_checkpoint=str(checkpoint),
        iterations=iterations, evaluations=evaluations,
        metrics={k: float(v) for k, v in metrics.items()},
        cost=Cost(processes=get_world_size(),
                  device='cuda' if torch.cuda.is_available() else 'cpu', **cost),
        launcher=launcher, host=socket.gethostname(), finished_at=now())
    if get_rank() == 0:
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
    if run.stage is Stage.ROBUSTNESS:
        return robustness(run, launcher, hooks, log_level)
    from mmengine.dist import barrier

    from ..launch import load_config, test, train
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
    record = record_run(run, cfg, checkpoint, metrics, int(runner.iter), 1,
                        dict(seconds_per_iter=RunDir(run.work_dir).seconds_per_iter()),
                        weights_origin(run, init_checkpoint(cfg)), launcher)
    barrier()  # nobody reads the record before it is whole
    return record


def robustness(run: PlannedRun, launcher: str = 'none', hooks: Sequence = (),
               log_level: Optional[str] = None) -> RunRecord:
    """The evaluation-only stage: the final checkpoint of the run ``run`` follows, evaluated
    clean and under each corruption and severity (resuming where it stopped), recorded with
    that run (``<its work dir>/robustness``)."""
    import time

    from mmengine.dist import barrier

    from ..launch import load_config
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
                        1 + len(run.corruptions) * len(run.severities),
                        dict(seconds=time.time() - start),
                        weights_origin(run, checkpoint), launcher)
    barrier()
    return record


def main(argv: Optional[List[str]] = None) -> None:
    """One run of a suite, in each process torchrun starts (the torchrun executor's command)."""
    from ..launch import distributed_session
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
