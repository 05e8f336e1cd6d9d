"""A run's record: what a finished run was, where it came from and what it gave, as typed data.

The record (``<work dir>/record.json``) is written once, atomically, by the rank-0 process of the
run (:func:`cb_transfer.suite.job.record_run`, its one writer) and read back by every reader: the
suite's states (a run is done when its record is there), the downstream run that starts from the
run's checkpoint, the tables and the report. What a run is (:class:`Provenance`: its stage,
protocol, arm, pair, seed, what the arm changes, the experiment it belongs to, the weights it
started from) is decided when the run is recorded, from the plan and the run's resolved config,
and never worked out again by a reader.

Every record names its schema. :func:`RunRecord.from_dict` reads the current one
(:data:`SCHEMA`) and schema 1 (the flat records of earlier versions, upgraded by name: what they
lacked is read from the run's dumped config, as those versions' readers did); any other schema
is refused with its number, never misread.
"""
import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

SCHEMA = 2


class RecordError(ValueError):
    """A record that cannot be read as any schema this version knows."""


@dataclass(frozen=True)
class Weights:
    """The checkpoint a run's backbone started from.

    Attributes:
        path: The file as the config named it.
        file: Its name.
        sha256: Its SHA-256.
        pretrained_arm: What the model that wrote it changed (``'plain'``, ``'+CB(mlp)'``), where
            the checkpoint tells.
        upstream_run: The planned run that wrote it; None for a file from elsewhere.
    """
    path: str
    file: str
    sha256: str
    pretrained_arm: Optional[str] = None
    upstream_run: Optional[str] = None


@dataclass(frozen=True)
class Provenance:
    """What a run is and where it came from: the plan's facts and its resolved config's.

    Attributes:
        stage: ``'upstream'`` (pretraining), ``'downstream'`` (fine-tuning) or ``'robustness'``
            (:class:`cb_transfer.suite.plan.Stage`).
        protocol: What the comparison measures (two-stage, cb-at-finetune, ...).
        arm: The arm's name in the suite: ``'plain'``, ``'cb'``, ``'reg4'``, ...
        pair: The pretraining pair the run belongs to (the pair's seed); None where no upstream
            run of the suite fed it.
        seed: The run's seed.
        weights: Where its backbone started; None when trained from scratch.
        change: What the arm changes, in words (``'plain'``, ``'+CB(mlp)'``, ``'+reg4'``).
        backbone: The arm's backbone options (CB's, ``timm_kwargs``).
        experiment: The twin rule's fingerprint (:func:`cb_transfer.experiment.fingerprint`):
            equal for the arms of one comparison.
        task, dataset, model, arch, schedule: How the tables name the experiment.
    """
    stage: str
    protocol: str
    arm: str
    pair: Optional[int]
    seed: int
    weights: Optional[Weights]
    change: str
    backbone: dict
    experiment: str
    task: str
    dataset: str
    model: str
    arch: str
    schedule: str


@dataclass(frozen=True)
class Cost:
    """What a run cost, for planning the next one.

    Attributes:
        processes: Processes of the run.
        device: ``'cuda'`` or ``'cpu'``.
        seconds_per_iter: Median time of a training iteration (mmengine's logged times).
        seconds: Wall time of an evaluation-only run.
    """
    processes: int
    device: str
    seconds_per_iter: Optional[float] = None
    seconds: Optional[float] = None


@dataclass(frozen=True)
class RunRecord:
    """A finished run (see the module's docstring).

    Attributes:
        name: The plan's name for the run (its work dir relative to the suite's root).
        suite: The suite file's name.
        config: The config file it ran.
        provenance: What it is and where it came from.
        final_checkpoint: The checkpoint training ended with (the one tested); for a robustness
            evaluation, the checkpoint it evaluated.
        iterations: Training iterations done (0 for an evaluation).
        evaluations: Evaluations done (1 for a training run's test).
        metrics: Test metrics of ``final_checkpoint``, as the evaluator returned them.
        cost: What it cost.
        launcher: mmengine's launcher (none, pytorch, slurm).
        host: Where rank 0 ran.
        finished_at: When the record was written.
    """
    name: str
    suite: str
    config: str
    provenance: Provenance
    final_checkpoint: str
    iterations: int
    evaluations: int
    metrics: Dict[str, float]
    cost: Cost
    launcher: str
    host: str
    finished_at: str
    schema: int = field(default=SCHEMA)

    @property
    def device_seconds(self) -> Optional[float]:
        """Device-seconds the run took: time per iteration x iterations (or its wall time) x
        processes; None where it was not measured."""
        if self.cost.seconds_per_iter and self.iterations:
            return self.cost.seconds_per_iter * self.iterations * self.cost.processes
        if self.cost.seconds:
            return self.cost.seconds * self.cost.processes
        return None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, config: Optional[Callable[[], Optional[dict]]] = None
                  ) -> 'RunRecord':
        """A record of this schema or of schema 1.

        Args:
            data: The record as read from its file.
            config: For a schema-1 record: returns the run's resolved config (what that schema
                did not record is read from it).

        Raises:
            RecordError: the schema is unknown, or the record lacks what its schema holds.
        """
        schema = data.get('schema', 1)
        if schema == 1:
            data = _from_schema_1(data, config)
        elif schema != SCHEMA:
            raise RecordError(f'schema {schema!r}: this version of cb_transfer reads schemas 1 '
                              f'and {SCHEMA}')
        try:
            provenance = dict(data['provenance'])
            weights = provenance.get('weights')
            provenance['weights'] = Weights(**weights) if weights else None
            return cls(**{**{k: data[k] for k in _FIELDS if k in data},
                          'provenance': Provenance(**provenance), 'cost': Cost(**data['cost'])})
        except (KeyError, TypeError) as err:
            raise RecordError(f'schema {schema}, but {type(err).__name__}: {err}') from None


_FIELDS = [f.name for f in dataclasses.fields(RunRecord)]
_SCHEMA_1 = ('name', 'suite', 'stage', 'arm', 'backbone', 'protocol', 'seed', 'pair', 'config',
             'checkpoint', 'iterations', 'metrics', 'weights', 'cost', 'launcher', 'host',
             'finished')


def _from_schema_1(data: dict, config: Optional[Callable[[], Optional[dict]]]) -> dict:
    """A schema-1 record (flat: stage, arm, ... beside the metrics; no identity) as schema 2."""
    missing = [k for k in _SCHEMA_1 if k not in data]
    if missing:
        raise RecordError(f'schema 1, but it lacks {missing}')
    cfg = config() if config is not None else None
    if cfg is None:
        raise RecordError('schema 1, and no dumped config to read what that schema did not '
                          'record')
    from .experiment import identify
    identity = identify(cfg)
    cost = data['cost'] or {}
    weights = data['weights']
    return dict(
        name=data['name'], suite=data['suite'], config=data['config'],
        provenance=dict(
            stage=data['stage'], protocol=data['protocol'], arm=data['arm'], pair=data['pair'],
            seed=data['seed'],
            weights={k: weights.get(k) for k in ('path', 'file', 'sha256', 'pretrained_arm',
                                                 'upstream_run')} if weights else None,
            change=identity['arm'], backbone=data['backbone'],
            experiment=identity['experiment'],
            **{k: identity[k] for k in ('task', 'dataset', 'model', 'arch', 'schedule')}),
        final_checkpoint=data['checkpoint'], iterations=data['iterations'],
        evaluations=cost.get('evaluations', 1), metrics=data['metrics'],
        cost=dict(processes=cost.get('processes', 1), device=cost.get('device', 'cpu'),
                  seconds_per_iter=cost.get('seconds_per_iter'), seconds=cost.get('seconds')),
        launcher=data['launcher'], host=data['host'], finished_at=data['finished'])
