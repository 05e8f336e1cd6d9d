"""Find the runs mmengine (or mmseg 0.x / mmdet 2.x) wrote, and read what each one is and scored.

A run of mmengine 1.x is a work_dir holding one timestamp folder per start: a resumed run has
several, and they are read as one. In each folder: ``vis_data/scalars.json`` (training and
validation scalars, one JSON object a line), ``vis_data/config.py`` (the dumped, fully resolved
config), ``<timestamp>.log`` (the text log, where :mod:`cb_transfer.models.pretrained` records the
pretrained weights a run started from) and, for a test, ``<timestamp>.json`` (the test metrics). A
run of the 0.x/2.x releases is one ``*.log.json`` file: a first line with ``env_info`` and the
config text, then lines with a ``mode`` key (``train`` or ``val``).

A run is identified from its config, never from its folder name: task (classification,
segmentation, detection), data set, model, backbone, CB options, seed, schedule and the protocol
(the config key ``protocol`` the suite sets: two-stage, cb-at-finetune, zoo-check, ...).
"""
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from mmengine.config import Config

from ..models.pretrained import WEIGHTS_LOG_PREFIX

# Keys whose values say where or how a run was executed, not what was trained: two arms that
# differ only in these are the same experiment.
BOOKKEEPING = ('work_dir', 'launcher', 'resume', 'load_from', 'env_cfg', 'model_wrapper_cfg',
               'default_hooks', 'log_processor', 'visualizer', 'vis_backends', 'log_level',
               'experiment_name', 'custom_hooks')
BOOKKEEPING_LEAVES = ('num_workers', 'persistent_workers', 'pin_memory')
# What a CB arm may differ in from its plain twin, besides cb itself.
CB_KEYS = ('model.backbone.cb', 'model.backbone.cb_position', 'model.backbone.cb_scaled',
           'model.backbone.cb_layers')
SEED_KEYS = ('randomness.seed', 'seed')
# Where pretrained weights come from may differ between arms (a CB-pretrained checkpoint for the
# CB arm), so it does not split them; it is reported instead.
CHECKPOINT_KEYS = ('model.backbone.init_cfg.checkpoint', 'model.pretrained')
MODEL_NAMES = {'UPerHead': 'UPerNet', 'FPNHead': 'Semantic FPN', 'FCNHead': 'FCN',
               'SegmenterMaskTransformerHead': 'Segmenter',
               'VisionTransformerClsHead': 'ViT classifier', 'LinearClsHead': 'linear classifier'}
DATASET_NAMES = {'ADE20KDataset': 'ADE20K', 'CocoDataset': 'COCO', 'CityscapesDataset':
                 'Cityscapes', 'ImageNet': 'ImageNet'}
FROM_SCRATCH = 'from scratch'


@dataclass
class Run:
    """One training run: what it is (from its config) and the evaluations it logged."""
    path: str
    task: str
    dataset: str
    model: str
    arch: str
    schedule: str
    cb: bool
    cb_options: str
    seed: Optional[int]
    checkpoint: Optional[str]  # the pretrained file the config names, if any
    protocol: str
    experiment: str           # a fingerprint of the config less CB, seed and bookkeeping
    evaluations: Dict[int, dict] = field(default_factory=dict)   # step -> metrics (percent)
    test: Optional[dict] = None
    finished: bool = True
    problems: List[str] = field(default_factory=list)
    # what the run's log says the backbone was initialised from (cb_transfer.models.pretrained)
    weights: Optional[dict] = None
    losses: Dict[int, float] = field(default_factory=dict)   # step -> training loss

    @property
    def weights_source(self) -> str:
        """``'<file> (<first 8 hex digits of its SHA-256>)'``, or ``'from scratch'``."""
        if self.weights:
            return f"{self.weights['file']} ({self.weights['sha256'][:8]})"
        if self.checkpoint:
            return f'{Path(self.checkpoint).name} (not in the log: hash unknown)'
        return FROM_SCRATCH

    def metric(self, name: str, best: bool = False) -> Optional[float]:
        """The last (or best) evaluation of ``name``; the test metrics if none was logged."""
        values = [(step, ev[name]) for step, ev in sorted(self.evaluations.items()) if name in ev]
        if not values and self.test and name in self.test:
            values = [(0, self.test[name])]
        if not values:
            return None
        if best:
            finite = [v for _, v in values if not math.isnan(v)]
            return max(finite) if finite else float('nan')
        return values[-1][1]


def _flatten(node, prefix=''):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _flatten(value, f'{prefix}{key}.')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _flatten(value, f'{prefix}{i}.')
    else:
        yield prefix[:-1], node


def _is_bookkeeping(key: str) -> bool:
    return (key.split('.')[0] in BOOKKEEPING or key.split('.')[-1] in BOOKKEEPING_LEAVES
            or key in CB_KEYS or key in SEED_KEYS or key in CHECKPOINT_KEYS)


def _dataset_type(cfg: dict) -> str:
    dataset = cfg.get('train_dataloader', {}).get('dataset') or cfg.get('data', {}).get('train', {})
    while isinstance(dataset, dict) and 'dataset' in dataset:  # RepeatDataset and the like
        dataset = dataset['dataset']
    name = dataset.get('type', '?') if isinstance(dataset, dict) else '?'
    return DATASET_NAMES.get(name, name)


def _arch(backbone: dict) -> str:
    if 'arch' in backbone:
        arch = str(backbone['arch'])
        sizes = [f'{k}={backbone[k]}' for k in ('embed_dims', 'depth', 'num_heads', 'patch_size')
                 if backbone.get(k) is not None]
        return arch + (f'({",".join(sizes)})' if sizes else '')
    # mmseg's / mmdet's own ViTs, e.g. in published 0.x logs
    dims = backbone.get('embed_dims')
    return f'{backbone.get("type", "?")}' + (f'(embed_dims={dims})' if dims else '')


def _schedule(cfg: dict) -> str:
    train_cfg = cfg.get('train_cfg') or {}
    runner = cfg.get('runner') or {}
    iters = train_cfg.get('max_iters') or runner.get('max_iters')
    epochs = train_cfg.get('max_epochs') or runner.get('max_epochs')
    if iters:
        return f'{iters // 1000}k' if iters % 1000 == 0 else f'{iters}it'
    return f'{epochs}e' if epochs else '?'


def identify(cfg: dict) -> dict:
    """What a run is, read from its resolved config."""
    model = cfg.get('model', {})
    backbone = model.get('backbone', {})
    if cfg.get('default_scope') == 'mmpretrain' or model.get('type') == 'ImageClassifier':
        task, head = 'classification', (model.get('head') or {}).get('type', '?')
    elif cfg.get('default_scope') == 'mmseg' or 'decode_head' in model:
        task, head = 'segmentation', model.get('decode_head', {}).get('type', '?')
    else:
        task, head = 'detection', model.get('type', '?')
    cb = bool(backbone.get('cb', False))
    options = ''
    if cb:
        options = (f"{backbone.get('cb_position', 'mlp')}"
                   + (', scaled' if backbone.get('cb_scaled') else '')
                   + (f", layers {list(backbone['cb_layers'])}" if backbone.get('cb_layers')
                      is not None else ''))
    seed = (cfg.get('randomness') or {}).get('seed', cfg.get('seed'))
    flat = dict(_flatten(cfg))
    experiment = json.dumps(sorted((k, repr(v)) for k, v in flat.items()
                                   if not _is_bookkeeping(k)))
    checkpoint = (backbone.get('init_cfg') or {}).get('checkpoint') or model.get('pretrained')
    protocol = cfg.get('protocol') or ('from-scratch' if not checkpoint else 'as configured')
    return dict(task=task, dataset=_dataset_type(cfg), model=MODEL_NAMES.get(head, head),
                arch=_arch(backbone), schedule=_schedule(cfg), cb=cb, cb_options=options,
                seed=seed, checkpoint=checkpoint, protocol=str(protocol), experiment=experiment)


def to_percent(key: str, value, fractions: bool) -> float:
    """mmseg 1.x logs mIoU in percent; mmseg 0.x and mmdet log fractions. Tables show percent."""
    return float(value) * 100 if fractions else float(value)


def _is_metric(key: str) -> bool:
    return (key in ('mIoU', 'mAcc', 'aAcc') or key.startswith(('coco/', 'accuracy/'))
            or key.endswith('_mAP') or '_mAP_' in key or key.startswith(('IoU.', 'Acc.')))


class LogReader:
    """Reads logs, collecting every problem with its file and line instead of raising."""

    def __init__(self):
        self.problems: List[str] = []

    def json_lines(self, path: Path) -> Iterable[Tuple[int, dict]]:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            self.problems.append(f'{path}: unreadable ({err})')
            return
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                self.problems.append(f'{path}:{number}: corrupt or truncated line skipped '
                                     f'({err.msg})')
                continue
            if not isinstance(record, dict):
                self.problems.append(f'{path}:{number}: not a JSON object, skipped')
                continue
            yield number, record

    def metrics(self, record: dict, fractions: bool, where: str) -> dict:
        out = {}
        for key, value in record.items():
            if not _is_metric(key) or isinstance(value, (str, list, dict)) or value is None:
                continue
            out[key] = to_percent(key, value, fractions)
            if math.isnan(out[key]):
                self.problems.append(f'{where}: {key} is NaN')
        return out


def _read_config(path: Path, reader: LogReader) -> Optional[dict]:
    try:
        return Config.fromfile(str(path)).to_dict()
    except Exception as err:  # a config we cannot read makes the run unidentifiable, not fatal
        reader.problems.append(f'{path}: config unreadable ({type(err).__name__}: {err})')
        return None


def _weights_in_log(log: Path, reader: LogReader) -> Optional[dict]:
    """The last record of pretrained weights in a text log (``pretrained weights: {JSON}``)."""
    if not log.is_file():
        return None
    found = None
    with open(log, errors='replace') as f:
        for number, line in enumerate(f, 1):
            at = line.find(WEIGHTS_LOG_PREFIX)
            if at < 0:
                continue
            try:
                found = json.loads(line[at + len(WEIGHTS_LOG_PREFIX):])
            except json.JSONDecodeError as err:
                reader.problems.append(f'{log}:{number}: unreadable weights record ({err.msg})')
    return found


def read_mmengine_run(work_dir: Path, reader: LogReader) -> Optional[Run]:
    """One run from a work_dir's timestamp folders, merged in time order."""
    folders = sorted(p.parent for p in work_dir.glob('*/vis_data'))
    config_files = [f / 'vis_data' / 'config.py' for f in folders
                    if (f / 'vis_data' / 'config.py').exists()]
    config_files = config_files or sorted(work_dir.glob('*.py'))
    if not config_files:
        reader.problems.append(f'{work_dir}: no dumped config; run skipped')
        return None
    cfg = _read_config(config_files[-1], reader)
    if cfg is None:
        return None
    run = Run(path=str(work_dir), **identify(cfg))
    fractions = run.task == 'detection'
    last_train_step = 0
    for folder in folders:
        scalars = folder / 'vis_data' / 'scalars.json'
        if scalars.exists():
            for number, record in reader.json_lines(scalars):
                step = record.get('step')
                if not isinstance(step, int):
                    reader.problems.append(f'{scalars}:{number}: no step, skipped')
                    continue
                if 'loss' in record or any(k == 'lr' or k.endswith('lr') for k in record):
                    last_train_step = max(last_train_step, step)
                    if isinstance(record.get('loss'), (int, float)):
                        run.losses[step] = float(record['loss'])
                    continue
                found = reader.metrics(record, fractions, f'{scalars}:{number}')
                if found:
                    run.evaluations.setdefault(step, {}).update(found)
        run.weights = _weights_in_log(folder / f'{folder.name}.log', reader) or run.weights
        test_file = folder / f'{folder.name}.json'
        if test_file.exists():
            for number, record in reader.json_lines(test_file):
                run.test = reader.metrics(record, fractions, f'{test_file}:{number}') or run.test
    # Training scalars are logged every `interval` iterations, so a finished run's last logged
    # step may fall short of max_iters by less than that; an interrupted one falls further short.
    max_iters = (cfg.get('train_cfg') or {}).get('max_iters')
    interval = ((cfg.get('default_hooks') or {}).get('logger') or {}).get('interval', 50)
    last_step = max([last_train_step, *run.evaluations])
    if max_iters and last_train_step and last_step <= max_iters - interval:
        run.finished = False
        run.problems.append(f'trained to iteration {last_step} of {max_iters}')
    return run


def read_legacy_log(path: Path, reader: LogReader) -> Optional[Run]:
    """One run from an mmseg 0.x / mmdet 2.x ``*.log.json``."""
    lines = list(reader.json_lines(path))
    header = next((r for _, r in lines if 'env_info' in r or 'config' in r), None)
    if header is None or 'config' not in header:
        reader.problems.append(f'{path}: no env_info/config header line; run skipped')
        return None
    try:
        cfg = Config.fromstring(header['config'], '.py').to_dict()
    except Exception as err:
        reader.problems.append(f'{path}: config text unreadable ({type(err).__name__})')
        return None
    if 'seed' in header and 'seed' not in cfg:
        cfg['seed'] = header['seed']
    run = Run(path=str(path), **identify(cfg))
    for number, record in lines:
        if record.get('mode') == 'val':
            step = record.get('iter') if 'epoch' not in record else record['epoch']
            found = reader.metrics(record, True, f'{path}:{number}')
            if found and isinstance(step, int):
                run.evaluations.setdefault(step, {}).update(found)
    return run


def collect_runs(paths: Iterable[str]) -> Tuple[List[Run], List[str]]:
    """Every run under ``paths`` and the problems met while reading them."""
    reader = LogReader()
    runs: List[Run] = []
    for root in map(Path, paths):
        if not root.exists():
            reader.problems.append(f'{root}: no such directory')
            continue
        work_dirs = sorted({p.parent.parent for p in root.rglob('vis_data')
                            if p.is_dir()})
        for work_dir in work_dirs:
            run = read_mmengine_run(work_dir, reader)
            if run is not None:
                runs.append(run)
        for log in sorted(root.rglob('*.log.json')):
            run = read_legacy_log(log, reader)
            if run is not None:
                runs.append(run)
    for run in runs:
        if not run.evaluations and not run.test:
            run.finished = False
            run.problems.append('no evaluation logged')
    return runs, reader.problems
