"""Read runs for the tables: a suite's runs through their records, anyone's mmengine runs through
what mmengine writes, and mmseg 0.x / mmdet 2.x ``*.log.json`` files.

Every mmengine run is read through :class:`cb_transfer.run_dir.RunDir`. A suite run is built from
its record (:class:`cb_transfer.record.RunRecord`): what it is, where its weights came from, its
test metrics and cost, never worked out again from its config; its logs give only the evaluations
logged during training (for ``--best`` and the curves). A run without a record (a user's own
mmengine run) is identified from its dumped config and judged complete by its logs: trained to
within one logging interval of ``max_iters`` and evaluated at least once; the tables list the runs
judged that way.
A run of the 0.x/2.x releases is one ``*.log.json`` file: a first line with ``env_info`` and the
config text, then lines with a ``mode`` key (``train`` or ``val``).
"""
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from mmengine.config import Config

from ..experiment import identify
from ..record import RunRecord, Weights
from ..robustness.metrics import is_relative, is_robustness
from ..run_dir import ATTEMPTS, ROBUSTNESS, RunDir

FROM_SCRATCH = 'from scratch'


@dataclass
class Run:
    """One training run: what it is (from its record, or its config where it has none) and the
    evaluations it logged."""
    path: str
    task: str
    dataset: str
    model: str
    arch: str
    schedule: str
    cb: bool
    change: str               # what the arm changes ('plain', '+CB(mlp)', '+reg4', ...)
    arm_options: dict
    seed: Optional[int]
    pretrained_file: Optional[str]  # the checkpoint its config loads, if any
    protocol: str
    experiment: str           # the twin rule's fingerprint (cb_transfer.experiment)
    evaluations: Dict[int, dict] = field(default_factory=dict)   # step -> metrics (percent)
    test: Optional[dict] = None
    complete: bool = False    # done by its record, or judged so by its logs
    problems: List[str] = field(default_factory=list)
    # where the backbone started, from the run's record (None: from scratch or no record)
    weights: Optional[Weights] = None
    recorded: bool = False    # done by its record (a suite run), not judged by its logs
    final_checkpoint: Optional[str] = None
    losses: Dict[int, float] = field(default_factory=dict)   # step -> training loss
    name: Optional[str] = None          # the plan's name (suite runs)
    pair: Optional[int] = None          # the pretraining pair it belongs to (suite runs)
    cost: Optional[float] = None        # device-seconds: time per iteration x iterations x procs
    device: str = 'cpu'
    # its robustness evaluation (percent): mean under corruption and relative, by metric name;
    # and each evaluation (corruption, severity, metrics as logged)
    robustness: Dict[str, float] = field(default_factory=dict)
    corruption_results: List[dict] = field(default_factory=list)

    @property
    def from_scratch(self) -> bool:
        return self.weights is None and (self.recorded or not self.pretrained_file)

    @property
    def unit(self) -> Optional[int]:
        """What the statistics replicate (:mod:`.stats`): the run's pretraining pair; for a run
        from scratch its seed; None for a run from a fixed checkpoint."""
        if self.pair is not None:
            return self.pair
        return self.seed if self.from_scratch else None

    @property
    def upstream_run(self) -> Optional[str]:
        """The plan's name of the upstream run whose checkpoint this run started from."""
        return self.weights.upstream_run if self.weights else None

    @property
    def weights_source(self) -> str:
        """``'<file> (<first 8 hex digits of its SHA-256>)'``, or ``'from scratch'``."""
        if self.weights:
            return f'{self.weights.file} ({self.weights.sha256[:8]})'
        if self.pretrained_file and not self.recorded:
            return f'{Path(self.pretrained_file).name} (no run record: hash unknown)'
        return FROM_SCRATCH

    def metric(self, name: str, best: bool = False) -> Optional[float]:
        """The last (or best) evaluation of ``name``; the test metrics if none was logged; a
        robustness metric from the run's robustness evaluation."""
        if name in self.robustness:
            return self.robustness[name]
        values = [(step, ev[name]) for step, ev in sorted(self.evaluations.items()) if name in ev]
        if not values and self.test and name in self.test:
            values = [(0, self.test[name])]
        if not values:
            return None
        if best:
            finite = [v for _, v in values if not math.isnan(v)]
            return max(finite) if finite else float('nan')
        return values[-1][1]


def to_percent(value, fractions: bool) -> float:
    """mmseg 1.x logs mIoU in percent; mmseg 0.x and mmdet log fractions. Tables show percent."""
    return float(value) * 100 if fractions else float(value)


def _is_metric(key: str) -> bool:
    return (key in ('mIoU', 'mAcc', 'aAcc') or key.startswith(('coco/', 'accuracy/'))
            or key.endswith('_mAP') or '_mAP_' in key or key.startswith(('IoU.', 'Acc.')))


def metrics_of(record: dict, fractions: bool, where: str, problems: List[str]) -> dict:
    """The evaluation metrics in a logged record, in percent; NaNs noted."""
    out = {}
    for key, value in record.items():
        if not _is_metric(key) or isinstance(value, (str, list, dict)) or value is None:
            continue
        out[key] = to_percent(value, fractions)
        if math.isnan(out[key]):
            problems.append(f'{where}: {key} is NaN')
    return out


def _identity(cfg: dict) -> dict:
    """A run without a record, identified from its config
    (:func:`~cb_transfer.experiment.identify`)."""
    found = identify(cfg)
    return dict(found, change=found.pop('arm'), pretrained_file=found.pop('checkpoint'))


def _logged(run: Run, run_dir: RunDir, fractions: bool) -> None:
    """The evaluations and training losses the run's logs hold."""
    train, evaluation = run_dir.scalars()
    for step, values in sorted(evaluation.items()):
        found = metrics_of(values, fractions, f'{run_dir.path} step {step}', run_dir.problems)
        if found:
            run.evaluations[step] = found
    run.losses = {step: float(values['loss']) for step, values in train.items()
                  if isinstance(values.get('loss'), (int, float))}


def from_record(run_dir: RunDir, record: RunRecord) -> Run:
    """A suite run, as its record says (and the evaluations its logs hold)."""
    p = record.provenance
    run = Run(path=str(run_dir.path), task=p.task, dataset=p.dataset, model=p.model,
              arch=p.arch, schedule=p.schedule, cb=bool(p.backbone.get('cb', False)),
              change=p.change, arm_options=p.backbone, seed=p.seed,
              pretrained_file=p.weights.path if p.weights else None, protocol=p.protocol,
              experiment=p.experiment, complete=True, weights=p.weights, recorded=True,
              final_checkpoint=record.final_checkpoint, name=record.name, pair=p.pair,
              cost=record.device_seconds, device=record.cost.device)
    fractions = run.task == 'detection'
    _logged(run, run_dir, fractions)
    run.test = metrics_of(record.metrics, fractions, str(run_dir.path), run_dir.problems)
    _read_robustness(run, RunDir(run_dir.path / ROBUSTNESS, run_dir.problems), fractions)
    return run


def read_run(run_dir: RunDir) -> Optional[Run]:
    """One mmengine run (all its starts): from its record where it has one, else from its
    config and logs; None when it has neither a record nor a config that reads."""
    record = run_dir.record
    if record is not None:
        return from_record(run_dir, record)
    cfg = run_dir.config()
    if cfg is None:
        return None
    run = Run(path=str(run_dir.path), **_identity(cfg))
    fractions = run.task == 'detection'
    _logged(run, run_dir, fractions)
    train, _ = run_dir.scalars()
    test = run_dir.test_metrics()
    if test is not None:
        run.test = metrics_of(test, fractions, str(run_dir.path), run_dir.problems) or None
    # Training scalars are logged every `interval` iterations, so a complete run's last logged
    # step may fall short of max_iters by less than that; an interrupted one falls further short.
    max_iters = (cfg.get('train_cfg') or {}).get('max_iters')
    interval = ((cfg.get('default_hooks') or {}).get('logger') or {}).get('interval', 50)
    last_train_step = max(train, default=0)
    last_step = max([last_train_step, *run.evaluations])
    run.complete = True
    if max_iters and last_train_step and last_step <= max_iters - interval:
        run.complete = False
        run.problems.append(f'trained to iteration {last_step} of {max_iters}')
    if not run.evaluations and not run.test:
        run.complete = False
        run.problems.append('no evaluation logged')
    if run.complete:
        last = run_dir.last_checkpoint()
        run.final_checkpoint = str(last) if last else None
    return run


def _read_robustness(run: Run, robust: RunDir, fractions: bool) -> None:
    """The run's robustness evaluation, where it finished (its record), in percent."""
    record = robust.record
    if record is None:
        return
    from ..robustness.evaluate import read_results
    for name, value in record.metrics.items():
        if is_robustness(name):  # the clean metric is the run's own
            run.robustness[name] = float(value) * 100 if fractions or is_relative(name) \
                else float(value)
    run.corruption_results = read_results(robust.path)


def read_legacy_log(path: Path, problems: List[str]) -> Optional[Run]:
    """One run from an mmseg 0.x / mmdet 2.x ``*.log.json``."""
    reader = RunDir(path.parent, problems)
    lines = list(reader.json_lines(path))
    header = next((r for _, r in lines if 'env_info' in r or 'config' in r), None)
    if header is None or 'config' not in header:
        problems.append(f'{path}: no env_info/config header line; run skipped')
        return None
    try:
        cfg = Config.fromstring(header['config'], '.py').to_dict()
    except Exception as err:
        problems.append(f'{path}: config text unreadable ({type(err).__name__})')
        return None
    if 'seed' in header and 'seed' not in cfg:
        cfg['seed'] = header['seed']
    run = Run(path=str(path), **_identity(cfg), complete=True)
    for number, record in lines:
        if record.get('mode') == 'val':
            step = record.get('iter') if 'epoch' not in record else record['epoch']
            found = metrics_of(record, True, f'{path}:{number}', problems)
            if found and isinstance(step, int):
                run.evaluations.setdefault(step, {}).update(found)
    if not run.evaluations:
        run.complete = False
        run.problems.append('no evaluation logged')
    return run


def read_run_dirs(paths: Sequence[Path]) -> Tuple[List[Run], List[str]]:
    """The runs of the given work dirs (a suite's planned runs) and the problems met."""
    problems: List[str] = []
    runs = [read_run(RunDir(path, problems)) for path in paths]
    return [run for run in runs if run is not None], problems


def collect_runs(paths: Iterable[str]) -> Tuple[List[Run], List[str]]:
    """Every run under ``paths`` and the problems met while reading them. Attempts that a
    suite moved aside are not runs."""
    problems: List[str] = []
    runs: List[Run] = []
    for root in map(Path, paths):
        if not root.exists():
            problems.append(f'{root}: no such directory')
            continue
        work_dirs = sorted({p.parent.parent for p in root.rglob('vis_data') if p.is_dir()
                            and not {ATTEMPTS, ROBUSTNESS} & set(p.relative_to(root).parts)})
        for work_dir in work_dirs:
            run = read_run(RunDir(work_dir, problems))
            if run is not None:
                runs.append(run)
        for log in sorted(root.rglob('*.log.json')):
            run = read_legacy_log(log, problems)
            if run is not None:
                runs.append(run)
    return runs, problems
