"""One planned run's work, whichever executor carries it out, and its state as its work dir tells.

The work: train (resuming from the newest readable checkpoint when the work dir has one), test the
checkpoint training ended with, and record that the run is done (``suite_done.json``: the final
checkpoint, the iteration reached, the test metrics, the weights it started from). A downstream
run that starts from an upstream run reads that run's record when it starts, not when it is
planned or submitted, so that a Slurm job queued behind its upstream job picks up the checkpoint
the upstream job ended with.
"""
import json
import os
from pathlib import Path
from typing import Optional, Sequence

from .plan import PlannedRun

DONE = 'suite_done.json'


def done_record(work_dir: Path) -> Optional[dict]:
    """What a finished run recorded, or None while it is not finished."""
    path = Path(work_dir) / DONE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # written by a run that died while writing it: not finished


def is_done(run: PlannedRun) -> bool:
    return done_record(run.work_dir) is not None


def upstream_checkpoint(work_dir: Path, name: str) -> str:
    """The checkpoint the upstream run in ``work_dir`` ended with."""
    record = done_record(work_dir)
    if record is None:
        raise RuntimeError(f'this run starts from the last checkpoint of the upstream run {name} '
                           f'({work_dir}), which has not finished')
    return record['checkpoint']


def resolve_weights(run: PlannedRun) -> Optional[str]:
    """The checkpoint file ``run``'s backbone starts from, or None for the config's own."""
    if run.weights is None:
        return None
    if run.weights.file:
        return run.weights.file
    return upstream_checkpoint(run.weights.work_dir, run.weights.run)


def iteration_reached(work_dir: Path) -> Optional[int]:
    """The last training step a run logged (from mmengine's scalars, any start)."""
    last = None
    for scalars in sorted(Path(work_dir).glob('*/vis_data/scalars.json')):
        for line in scalars.read_text().splitlines():
            if '"loss"' not in line:
                continue
            try:
                step = json.loads(line).get('step')
            except json.JSONDecodeError:
                continue
            if isinstance(step, int):
                last = step if last is None else max(last, step)
    return last


def execute(run: PlannedRun, launcher: str = 'none', hooks: Sequence = (),
            log_level: Optional[str] = None) -> dict:
    """Train ``run`` (resuming where it stopped), test its last checkpoint, record it as done.

    Args:
        launcher: mmengine's launcher: 'none' in this process, 'slurm' in a Slurm job's tasks.
        hooks: Extra mmengine hooks (instances) for training, such as the console's progress.
        log_level: Override the config's log level.

    Returns:
        The done record.
    """
    from ..launch import load_config, test, train
    pretrained = resolve_weights(run)

    def config():
        cfg = load_config(run.config, str(run.work_dir), run.overrides, launcher,
                          pretrained=pretrained)
        if log_level:
            cfg.log_level = log_level
        return cfg

    runner = train(config(), resume=True, hooks=hooks)
    checkpoint = (run.work_dir / 'last_checkpoint').read_text().strip()
    metrics = test(config(), checkpoint)
    record = dict(name=run.name, checkpoint=checkpoint, iters=runner.iter,
                  metrics={k: float(v) for k, v in metrics.items()}, pretrained=pretrained)
    if int(os.environ.get('RANK', '0')) == 0:
        partial = run.work_dir / (DONE + '.partial')
        partial.write_text(json.dumps(record, indent=2))
        partial.replace(run.work_dir / DONE)
    return record
