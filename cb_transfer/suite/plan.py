"""A suite's plan: what runs, in which order, and which upstream run feeds which downstream arm.

The plan is pure data built from a suite file (an mmengine config in ``configs/suites/``)::

    upstream = dict(                  # optional: pretraining pairs, by name
        deit_s=dict(plain='configs/imagenet/deit-s16_8xb128-300e_in1k-224.py',
                    cb='configs/imagenet/deit-s16-cb_8xb128-300e_in1k-224.py'))
    upstream_seeds = [0, 1, 2]        # optional: the pretraining pairs, by seed (or a count;
                                      # default one pair, seed 0); an entry may name its own
    downstream = [                    # fine-tuning entries
        dict(plain=CONFIG, cb=CONFIG, weights='deit_s'),
        ...
    ]
    seeds = [0, 1, 2]                 # the fine-tuning seeds (an entry may name its own)
    cfg_options = {CONFIG: {key: value}, '*': {...}}   # optional overrides ('*': every config)
    smoke_data = True                 # optional: generate data/smoke first
    work_dir = 'work_dirs/suite_NAME' # optional

A downstream entry's ``weights`` says where each arm starts, and so which protocol it measures:

    weights='deit_s'                           two-stage: each arm from its own pretraining run
                                               (the plain arm from deit_s's plain run, the +CB
                                               arm from its CB run), the paper's protocol
    weights=dict(plain='a.pth', cb='b.pth')    two-stage from files the user already has
    weights=dict(plain='deit_s.plain',         cb-at-finetune: both arms from the same plain
                 cb='deit_s.plain')            weights, CB switched on at fine-tuning
    dict(plain=CONFIG,                         zoo-check: a plain arm alone from a public
         weights=dict(plain='deit.pth'))       checkpoint (a check of the recipe, not of CB)
    dict(plain=CONFIG, reg4=CONFIG,            zoo-pair: two published checkpoints of one
         protocol='zoo-pair',                  recipe, each arm from its own (nothing
         weights=dict(plain='x.pth',           pretrained here)
                      reg4='y.pth'))
    no weights                                 what the configs themselves load, under the
                                               protocol the config names

An entry's arms are named keys: ``plain`` is the control, and every other key (``cb``, ``reg4``,
``cb_reg4``, ...) a treatment compared with it, sharing the control's runs; an upstream entry
names the same arms, and with ``weights='NAME'`` each downstream arm starts from its own.

Two arms from different kinds of source (a public plain checkpoint against an in-house CB run)
would confound the recipe with CB, and the plan refuses them; so it does arms that are not twins
(a treatment whose config differs from the control's in more than its backbone options, CB's
and ``timm_kwargs``, and its weights, by the rule the tables pair runs with,
:func:`cb_transfer.experiment.differences`). Every run carries its protocol as the config key
``protocol``, so that the result tables never pair arms of different protocols.

Replication has two levels. A *pair* is the plain and the +CB model pretrained with one seed and
one recipe (``upstream/<config>/seed<r>``); each downstream entry that starts from an upstream
entry fine-tunes every pair of it with each fine-tuning seed, each arm from its own pair's
checkpoint (``<protocol>/<config>/pair<r>/seed<s>``). Fine-tuning seeds are nested in pairs, and
the statistics take the pair as the unit (:mod:`cb_transfer.results.stats`). Runs that no
upstream run feeds have no pair: ``<protocol>/<config>/seed<s>``.
"""
import enum
import os.path as osp
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from mmengine.config import Config

from ..config_lookup import find_config, find_suite
from ..experiment import CONTROL, arm_options, differences  # CONTROL: the compared-with arm
from ..run_dir import ROBUSTNESS

ENTRY_KEYS = ('weights', 'seeds', 'protocol')   # what an entry holds besides its arms
ZOO_PAIR = 'zoo-pair'
UPSTREAM = 'upstream'
TWO_STAGE, CB_AT_FINETUNE, ZOO_CHECK, PRETRAINING = (
    'two-stage', 'cb-at-finetune', 'zoo-check', 'pretraining')


class Stage(str, enum.Enum):
    """What a run does; the value is the name records and work dirs use."""
    PRETRAINING = 'upstream'      # an arm trained from scratch on ImageNet
    FINETUNING = 'downstream'     # an arm fine-tuned on a downstream task
    ROBUSTNESS = 'robustness'     # a fine-tuned checkpoint evaluated under corruptions

    @property
    def trains(self) -> bool:
        """It trains a model (and so has its own row in the tables); otherwise it evaluates the
        checkpoint of the run it follows and is read with that run."""
        return self is not Stage.ROBUSTNESS


class SuiteError(ValueError):
    """A suite file that cannot be planned; the message names the file and the entry."""


@dataclass(frozen=True)
class Weights:
    """Where a run's backbone starts: the last checkpoint of an upstream run, or a file."""
    run: Optional[str] = None      # the upstream run's name (its work dir, relative to the root)
    work_dir: Optional[Path] = None   # the upstream run's work dir
    file: Optional[str] = None

    def describe(self) -> str:
        return f'<last checkpoint of {self.run}>' if self.run else str(self.file)


@dataclass(frozen=True)
class PlannedRun:
    """One training run (then its test): everything an executor needs, nothing it must look up."""
    name: str                      # e.g. 'two-stage/upernet_..._ade20k-64x64/seed0'
    suite: str                     # the suite's name (its file's stem)
    stage: Stage
    arm: str                       # 'plain' (the control), 'cb', or any treatment's name
    config: str                    # absolute path
    seed: int
    protocol: str
    work_dir: Path
    options: Dict = field(default_factory=dict, hash=False)   # the suite's cfg_options
    weights: Optional[Weights] = None
    # the pretraining pair: its seed (upstream runs: their own), None where no upstream run feeds
    # the run (files, the configs' own weights, from scratch)
    pair: Optional[int] = None
    after: Optional[str] = None    # the run that must finish first (Plan.waits_for)
    # a robustness evaluation's corruptions and severities (stage 'robustness')
    corruptions: Tuple[str, ...] = ()
    severities: Tuple[int, ...] = ()
    entry: Optional[int] = None    # the index of its downstream entry in the suite file

    @property
    def config_name(self) -> str:
        return Path(self.config).stem

    @property
    def overrides(self) -> dict:
        """The config keys this run sets: the suite's options, its seed and its protocol."""
        return {**self.options, 'randomness.seed': self.seed, 'protocol': self.protocol}


@dataclass
class Plan:
    suite_file: str
    root: Path
    runs: List[PlannedRun]
    seeds: List[int]               # fine-tuning seeds (an entry may name its own)
    pairs: List[int] = field(default_factory=lambda: [0])   # pretraining pairs (their seeds)
    smoke_data: bool = False
    slurm: Dict = field(default_factory=dict)   # the suite file's slurm = dict(...)

    def run(self, name: str) -> PlannedRun:
        return next(r for r in self.runs if r.name == name)

    def waits_for(self, run: PlannedRun) -> Optional[PlannedRun]:
        """The run that must finish before ``run`` starts: the upstream run whose checkpoint it
        starts from, or the run a robustness evaluation evaluates."""
        return self.run(run.after) if run.after else None

    @property
    def name(self) -> str:
        return Path(self.suite_file).stem

    def summary(self) -> str:
        """The runs at both levels of the design, in words."""
        def count(n: int, what: str) -> str:
            return f'{n} {what}{"s" * (n != 1)}'

        up = [r for r in self.runs if r.stage is Stage.PRETRAINING]
        down = [r for r in self.runs if r.stage is Stage.FINETUNING]
        parts = []
        if up:
            pairs = sorted({r.pair for r in up})
            parts.append(f'{len(up)} pretraining: {count(len(pairs), "pair")} (seeds '
                         f'{", ".join(map(str, pairs))})')
        if down:
            shapes = {}
            for config in {r.config for r in down}:
                runs = [r for r in down if r.config == config]
                shapes[config] = (len({r.pair for r in runs if r.pair is not None}),
                                  len({r.seed for r in runs}))
            shape = [count(len(shapes), 'config')]
            if len(set(shapes.values())) == 1:
                pairs, seeds = next(iter(shapes.values()))
                shape += [count(pairs, 'pair')] if pairs else []
                shape.append(count(seeds, 'seed'))
                parts.append(f'{len(down)} fine-tuning: {" x ".join(shape)}')
            else:
                pairs = sorted({p for p, _ in shapes.values()})
                seeds = sorted({s for _, s in shapes.values()})
                parts.append(f'{len(down)} fine-tuning: {shape[0]}, each with {pairs[0]} to '
                             f'{pairs[-1]} pairs of {seeds[0]} to {seeds[-1]} seeds')
        robust = [r for r in self.runs if r.stage is Stage.ROBUSTNESS]
        if robust:
            from ..robustness.metrics import is_benchmark
            sample = robust[0]
            kind = ('the benchmark\'s 15 corruptions x 5 severities'
                    if is_benchmark(sample.corruptions, sample.severities) else
                    f'a subset: {", ".join(sample.corruptions)} at severit'
                    f'{"y" if len(sample.severities) == 1 else "ies"} '
                    f'{", ".join(map(str, sample.severities))}')
            parts.append(f'{len(robust)} robustness evaluations ({kind}, and clean)')
        return f'{count(len(self.runs), "run")} ({"; ".join(parts)})'

    def missing_inputs(self) -> List[str]:
        """Data and pretrained files the runs read that are not there (relative to the current
        directory), each with the configs that need it. A checkpoint that an upstream run of the
        plan will write is not missing."""
        needed_by: Dict[str, List[str]] = {}
        by_config: Dict[str, List[PlannedRun]] = {}
        for run in self.runs:
            by_config.setdefault(run.config, []).append(run)
        for config, runs in sorted(by_config.items()):
            cfg = Config.fromfile(config)
            wanted = _data_files(cfg)
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


def _data_files(cfg: Config) -> List[str]:
    """The annotation files and image folders a config's data loaders and evaluators read."""
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
    return wanted


def _resolve_config(config: str, where: str) -> str:
    try:
        return str(find_config(config))
    except FileNotFoundError as err:
        raise SuiteError(f'{err}, named in {where}') from None


def _arms(entry: dict, where: str) -> Dict[str, str]:
    """The entry's arms by name: ``plain`` (the control) and any treatments (``cb``, ``reg4``,
    ...), each a config; the control first."""
    arms = {k: v for k, v in entry.items() if k not in ENTRY_KEYS}
    if not arms:
        raise SuiteError(f'{where}: names no config (plain=..., cb=..., or other arms)')
    bad = [k for k, v in arms.items() if not isinstance(v, str) or not k.isidentifier()]
    if bad:
        raise SuiteError(f'{where}: {sorted(bad)} are neither arms (NAME=CONFIG) nor one of '
                         f'{", ".join(ENTRY_KEYS)}')
    if len(arms) > 1 and CONTROL not in arms:
        raise SuiteError(f'{where}: several arms ({", ".join(arms)}) but no control: the arm '
                         f'every other is compared with is {CONTROL}=CONFIG')
    order = sorted(arms, key=lambda arm: (arm != CONTROL, list(arms).index(arm)))
    return {arm: _resolve_config(arms[arm], where) for arm in order}


def _seeds(value, where: str, key: str) -> List[int]:
    """A list of seeds, or a count n (seeds 0..n-1)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return list(range(value))
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value) \
            and len(set(value)) == len(value):
        return [int(v) for v in value]
    raise SuiteError(f'{where}: {key}={value!r} is neither a list of distinct integer seeds nor a '
                     'positive count')


@dataclass(frozen=True)
class Source:
    """What a suite entry names as an arm's weights: an arm of an upstream entry, or a file."""
    upstream: Optional[str] = None
    arm: Optional[str] = None
    file: Optional[str] = None

    def describe(self) -> str:
        return f'{self.upstream}.{self.arm}' if self.upstream else str(self.file)


def _source(spec: str, upstream: Dict[str, dict], where: str) -> Source:
    """'NAME.plain' / 'NAME.cb' (an upstream run) or a file path."""
    name, _, arm = spec.rpartition('.')
    if name in upstream:
        if arm not in upstream[name]['arms']:
            raise SuiteError(f"{where}: '{spec}' names the {arm!r} arm of upstream {name!r}, "
                             f'which has {sorted(upstream[name]["arms"])}')
        return Source(upstream=name, arm=arm)
    if '/' not in spec and not spec.endswith(('.pth', '.pt', '.bin', '.safetensors')):
        raise SuiteError(f"{where}: '{spec}' is neither an upstream run (NAME.ARM, e.g. "
                         f'NAME.plain; upstream here: {sorted(upstream) or "none"}) nor a '
                         'checkpoint file')
    return Source(file=spec)


def _check_twins(arms: Dict[str, str], options_for, where: str) -> Dict[str, dict]:
    """Refuse a treatment whose config (with the suite's options) differs from the control's in
    more than its backbone options and where its weights come from, naming the first keys.
    Returns each arm's backbone options (:func:`~cb_transfer.experiment.arm_options`)."""
    if len(arms) < 2:
        return {}
    resolved = {}
    for arm, config in arms.items():
        cfg = Config.fromfile(config)
        cfg.merge_from_dict(options_for(config))
        resolved[arm] = cfg.to_dict()
    for arm in list(arms)[1:]:
        found = differences(resolved[CONTROL], resolved[arm])
        if found:
            raise SuiteError(
                f'{where}: the arms are not twins: besides their backbone options and weights, '
                f'{Path(arms[CONTROL]).name} ({CONTROL}) and {Path(arms[arm]).name} ({arm}) '
                'differ in\n  ' + '\n  '.join(found))
    return {arm: arm_options(cfg) for arm, cfg in resolved.items()}


def _weights(entry: dict, arms: Dict[str, str], upstream: Dict[str, dict],
             where: str) -> Tuple[Dict[str, Optional[Source]], Optional[str]]:
    """Each arm's source of weights and the protocol they make; protocol None: the configs'
    own."""
    spec = entry.get('weights')
    asked = entry.get('protocol')
    if asked is not None and asked != ZOO_PAIR:
        raise SuiteError(f"{where}: protocol={asked!r}: an entry names only '{ZOO_PAIR}' (two "
                         'published checkpoints of one recipe); the others follow from weights')
    if spec is None:
        if asked:
            raise SuiteError(f"{where}: protocol='{ZOO_PAIR}' needs weights=dict(ARM=FILE, ...)")
        return {arm: None for arm in arms}, None
    if isinstance(spec, str):
        if spec not in upstream:
            raise SuiteError(f"{where}: weights='{spec}' is not an upstream pair (upstream here: "
                             f'{sorted(upstream) or "none"})')
        sources = {arm: _source(f'{spec}.{arm}', upstream, where) for arm in arms}
    elif not isinstance(spec, dict) or set(spec) != set(arms):
        raise SuiteError(f'{where}: weights must be an upstream name or dict(ARM=..., ...) '
                         f'with a source for each arm ({", ".join(arms)}); got {spec!r}')
    else:
        sources = {arm: _source(spec[arm], upstream, where) for arm in arms}
    control = sources.get(CONTROL) or next(iter(sources.values()))
    if len(sources) == 1:
        return sources, ZOO_CHECK if control.file else TWO_STAGE
    if asked == ZOO_PAIR:
        if not all(source.file for source in sources.values()):
            raise SuiteError(f"{where}: protocol='{ZOO_PAIR}' compares published checkpoints: "
                             'every arm starts from a file')
        return sources, ZOO_PAIR
    if all(source == control for source in sources.values()):
        return sources, CB_AT_FINETUNE
    if all(source.upstream for source in sources.values()):
        wrong = [f'{arm} from {source.describe()}' for arm, source in sources.items()
                 if (source.upstream, source.arm) != (control.upstream, arm)]
        if wrong:
            raise SuiteError(f'{where}: the arms start from {", ".join(wrong)}, not each from '
                             f'its own arm of one upstream entry ({control.upstream}); a '
                             'comparison needs every arm pretrained with one recipe')
        return sources, TWO_STAGE
    if all(source.file for source in sources.values()):
        return sources, TWO_STAGE
    raise SuiteError(f'{where}: some arms start from a file and others from an upstream run '
                     f'({", ".join(s.describe() for s in sources.values())}): that compares two '
                     'recipes, not the change. Give every arm an upstream run of one entry, or '
                     'every arm a file.')


ROBUSTNESS_KEYS = ('corruptions', 'severities', 'entries')


def _robustness_runs(spec, runs: List[PlannedRun], where: str) -> List[PlannedRun]:
    """The evaluation-only stage a suite asks for (``robustness = dict(corruptions=...,
    severities=..., entries=...)``): one run per fine-tuning run of the chosen downstream
    entries (all by default), evaluating its final checkpoint, after it."""
    if spec is None:
        return []
    from ..robustness.corruptions import BENCHMARK, HELD_OUT, SEVERITIES
    where = f'{where}, robustness'
    if not isinstance(spec, dict) or set(spec) - set(ROBUSTNESS_KEYS):
        raise SuiteError(f'{where}: give dict({", ".join(f"{k}=..." for k in ROBUSTNESS_KEYS)})'
                         f'; got {spec!r}')
    corruptions = tuple(spec.get('corruptions') or BENCHMARK)
    unknown = [c for c in corruptions if c not in BENCHMARK + HELD_OUT]
    if unknown:
        raise SuiteError(f'{where}: unknown corruptions {unknown}; the benchmark has '
                         f'{", ".join(BENCHMARK)} and holds out {", ".join(HELD_OUT)}')
    severities = tuple(spec.get('severities') or SEVERITIES)
    if any(s not in SEVERITIES for s in severities):
        raise SuiteError(f'{where}: severities={list(severities)} must be among {SEVERITIES}')
    entries = spec.get('entries')
    downstream = [r for r in runs if r.stage is Stage.FINETUNING]
    configs = list(dict.fromkeys(r.config for r in downstream))
    chosen = set(configs)
    if entries is not None:
        # an entry is chosen by its index in downstream; its arms' configs are what is evaluated
        by_entry = {}
        for run in downstream:
            by_entry.setdefault(run.entry, set()).add(run.config)
        bad = [e for e in entries if e not in by_entry]
        if bad:
            have = f'0..{max(by_entry)}' if by_entry else 'it has no entries'
            raise SuiteError(f'{where}: entries {bad} are not indices of downstream ({have})')
        chosen = set().union(*(by_entry[e] for e in entries))
    return [PlannedRun(
        name=f'{run.name}/{ROBUSTNESS}', suite=run.suite, stage=Stage.ROBUSTNESS, arm=run.arm,
        config=run.config, seed=run.seed, protocol=run.protocol,
        work_dir=run.work_dir / ROBUSTNESS, options=run.options,
        weights=Weights(run=run.name, work_dir=run.work_dir), pair=run.pair, after=run.name,
        entry=run.entry, corruptions=corruptions, severities=severities)
        for run in downstream if run.config in chosen]


def load_plan(suite: str, work_dir: Optional[str] = None) -> Plan:
    """Read and check a suite (a preset's name, ``cb_transfer::suites/...`` or a file); every
    config it names must exist."""
    suite_file = str(find_suite(suite))
    where = f"suite file '{suite_file}'"
    try:
        suite = Config.fromfile(suite_file)
    except Exception as err:  # mmengine's own message says what is wrong with the file
        raise SuiteError(f'{where} could not be read: {type(err).__name__}: {err}') from err
    if 'pairs' in suite:
        raise SuiteError(f"{where}: 'pairs' is the old format; write downstream = "
                         "[dict(plain=..., cb=...), ...] (see cb_transfer/suite/plan.py)")
    for key in ('downstream', 'seeds'):
        if key not in suite:
            raise SuiteError(f"{where} has no '{key}'")
    suite_name = Path(suite_file).stem
    root = Path(work_dir or suite.get('work_dir') or f'work_dirs/suite_{suite_name}')
    options = suite.get('cfg_options') or {}
    seeds = _seeds(suite.seeds, where, 'seeds')
    if 'upstream_seed' in suite and 'upstream_seeds' not in suite:  # one pair, as before
        pair_seeds = _seeds([suite.upstream_seed], where, 'upstream_seed')
    else:
        pair_seeds = _seeds(suite.get('upstream_seeds', 1), where, 'upstream_seeds')

    # the suite's options by the config file each key means (keys are named as configs are)
    by_file = {}
    for key, values in options.items():
        if key != '*':
            by_file.setdefault(_resolve_config(key, f"{where}, cfg_options"), {}).update(values)

    def options_for(config: str) -> dict:
        return {**options.get('*', {}), **by_file.get(config, {})}

    runs: List[PlannedRun] = []
    # upstream name -> its arms' configs and {pair seed: {arm: run}}
    upstream: Dict[str, dict] = {}
    for name, entry in (suite.get('upstream') or {}).items():
        pair_where = f"{where}, upstream '{name}'"
        if not isinstance(entry, dict):
            raise SuiteError(f'{pair_where}: give dict(plain=CONFIG, cb=CONFIG)')
        if 'weights' in entry:
            raise SuiteError(f'{pair_where}: a pretraining pair trains from scratch; weights= '
                             'belongs to downstream entries')
        arms = _arms(entry, pair_where)
        _check_twins(arms, options_for, pair_where)
        pairs = _seeds(entry['seeds'], pair_where, 'seeds') if 'seeds' in entry else pair_seeds
        upstream[name] = dict(arms=arms, pairs={})
        for pair in pairs:
            upstream[name]['pairs'][pair] = {}
            for arm, config in arms.items():
                run = PlannedRun(
                    name=f'{UPSTREAM}/{Path(config).stem}/seed{pair}', suite=suite_name,
                    stage=Stage.PRETRAINING, arm=arm, config=config, seed=pair, protocol=PRETRAINING,
                    work_dir=root / UPSTREAM / Path(config).stem / f'seed{pair}',
                    options=options_for(config), pair=pair)
                upstream[name]['pairs'][pair][arm] = run
                if run.name not in {r.name for r in runs}:
                    runs.append(run)

    for index, entry in enumerate(suite.downstream):
        entry_where = f'{where}, downstream[{index}]'
        if not isinstance(entry, dict):
            raise SuiteError(f'{entry_where}: give dict(plain=CONFIG, cb=CONFIG, weights=...)')
        arms = _arms(entry, entry_where)
        backbones = _check_twins(arms, options_for, entry_where)
        sources, protocol = _weights(entry, arms, upstream, entry_where)
        changed = [arm for arm, options in backbones.items()
                   if options.get('timm_kwargs') != backbones[CONTROL].get('timm_kwargs')]
        if protocol == CB_AT_FINETUNE and changed:
            raise SuiteError(f"{entry_where}: {', '.join(changed)} change timm_kwargs but start "
                             f"from the same checkpoint as {CONTROL}: a change to the model needs "
                             'weights pretrained with it (give each arm its own upstream arm); '
                             'only CB, which adds no weights, can be switched on at fine-tuning')
        entry_seeds = _seeds(entry['seeds'], entry_where, 'seeds') if 'seeds' in entry else seeds
        for arm, config in arms.items():
            arm_protocol = protocol or Config.fromfile(config).get('protocol') or 'as configured'
            source = sources[arm]
            if source is not None and source.upstream:  # each pair of the upstream entry
                pairs = upstream[source.upstream]['pairs']
                starts = [(pair, Weights(run=pairs[pair][source.arm].name,
                                         work_dir=pairs[pair][source.arm].work_dir))
                          for pair in pairs]
            else:
                starts = [(None, Weights(file=source.file) if source is not None else None)]
            for pair, weights in starts:
                for s in entry_seeds:
                    level = f'pair{pair}/seed{s}' if pair is not None else f'seed{s}'
                    name = f'{arm_protocol}/{Path(config).stem}/{level}'
                    if name in {r.name for r in runs}:
                        raise SuiteError(f'{entry_where}: {name} is planned twice')
                    runs.append(PlannedRun(
                        name=name, suite=suite_name, stage=Stage.FINETUNING, arm=arm, config=config,
                        seed=int(s), protocol=arm_protocol, work_dir=root / name,
                        options=options_for(config), weights=weights, pair=pair,
                        after=weights.run if weights is not None else None, entry=index))
    runs += _robustness_runs(suite.get('robustness'), runs, where)
    return Plan(suite_file=suite_file, root=root, runs=runs, seeds=seeds, pairs=pair_seeds,
                smoke_data=bool(suite.get('smoke_data')), slurm=dict(suite.get('slurm') or {}))
