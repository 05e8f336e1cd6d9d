"""What a run is, read from its resolved config, and the one rule that says which runs are twins.

A run is identified from its config, never from its folder name: task (classification,
segmentation, detection), data set, model, backbone, its arm (the backbone options in which the
compared arms differ: CB and its options, and timm's constructor arguments, ``timm_kwargs``),
seed, schedule and the protocol (the config key ``protocol`` the suite sets: two-stage,
cb-at-finetune, zoo-check, ...).

Two configs are *twins* (the control and a treatment arm of one comparison) when they are equal
apart from their arm keys, the seed, where the backbone's weights come from and bookkeeping
(where and how the run was executed). The suite's plan refuses entries whose arms are not twins
and the result tables pair runs by the same rule: :func:`fingerprint` is that rule. An arm is
named by what it changes (:func:`arm_label`: ``+CB(mlp)``, ``+reg4``, ``+CB(mlp)+reg4``).
"""
import functools
import json
from typing import Dict, Iterator, List, Tuple

# Keys whose values say where or how a run was executed, not what was trained: two arms that
# differ only in these are the same experiment.
BOOKKEEPING = ('work_dir', 'launcher', 'resume', 'load_from', 'env_cfg', 'model_wrapper_cfg',
               'default_hooks', 'log_processor', 'visualizer', 'vis_backends', 'log_level',
               'experiment_name', 'custom_hooks')
BOOKKEEPING_LEAVES = ('num_workers', 'persistent_workers', 'pin_memory')
# What an arm may differ in from its control, besides the weights it starts from: CB and its
# options, and any timm constructor argument (model.backbone.timm_kwargs.*).
ARM_KEYS = ('model.backbone.cb', 'model.backbone.cb_position', 'model.backbone.cb_scaled',
            'model.backbone.cb_layers')
ARM_PREFIX = 'model.backbone.timm_kwargs'
CONTROL = 'plain'
# CB's options where CB is on, as the backbone applies them when a config leaves them out
CB_DEFAULTS = dict(cb_position='mlp', cb_scaled=False, cb_layers=None)
# short names of timm_kwargs in arm labels, each with what tells its values apart (others show
# as +key=value)
SHORT = {'reg_tokens': lambda v: f'reg{v}', 'init_values': lambda v: f'LS({v:g})',
         'qk_norm': lambda v: 'QKnorm', 'no_embed_class': lambda v: 'noembcls',
         'pre_norm': lambda v: 'prenorm', 'class_token': lambda v: 'nocls' if not v else 'cls',
         'mlp_layer': lambda v: str(v), 'norm_layer': lambda v: str(v),
         'attn_layer': lambda v: f'attn={v}'}
SEED_KEYS = ('randomness.seed', 'seed')
# Where pretrained weights come from may differ between arms (a CB-pretrained checkpoint for the
# CB arm), so it does not split them; the tables report it instead.
CHECKPOINT_KEYS = ('model.backbone.init_cfg.checkpoint', 'model.pretrained')
MODEL_NAMES = {'UPerHead': 'UPerNet', 'FPNHead': 'Semantic FPN', 'FCNHead': 'FCN',
               'SegmenterMaskTransformerHead': 'Segmenter',
               'VisionTransformerClsHead': 'ViT classifier', 'LinearClsHead': 'linear classifier'}
DATASET_NAMES = {'ADE20KDataset': 'ADE20K', 'CocoDataset': 'COCO', 'CityscapesDataset':
                 'Cityscapes', 'ImageNet': 'ImageNet'}


def flatten(node, prefix: str = '') -> Iterator[Tuple[str, object]]:
    """(dotted key, leaf value) of a nested config; list items by their index."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from flatten(value, f'{prefix}{key}.')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from flatten(value, f'{prefix}{i}.')
    else:
        yield prefix[:-1], node


def _splits_experiments(key: str) -> bool:
    """Whether two runs that differ in ``key`` are different experiments."""
    return not (key.split('.')[0] in BOOKKEEPING or key.split('.')[-1] in BOOKKEEPING_LEAVES
                or key in ARM_KEYS or key == ARM_PREFIX or key.startswith(ARM_PREFIX + '.')
                or key in SEED_KEYS or key in CHECKPOINT_KEYS)


def _compared(cfg: dict) -> Dict[str, str]:
    return {k: repr(v) for k, v in flatten(cfg) if _splits_experiments(k)}


def fingerprint(cfg: dict) -> str:
    """The experiment a config belongs to: equal for twins, different otherwise."""
    return json.dumps(sorted(_compared(cfg).items()))


# the parts of a config a reader looks at first when two differ
SECTIONS = ('model', 'train_dataloader', 'optim_wrapper', 'param_scheduler', 'train_cfg',
            'val_dataloader', 'test_dataloader', 'val_evaluator', 'test_evaluator')


def differences(cfg: dict, other: dict, limit: int = 5) -> List[str]:
    """The keys that keep two configs from being twins, with both values (the model's first,
    at most ``limit`` and a count of the rest); empty for twins."""
    a, b = _compared(cfg), _compared(other)

    def order(key: str):
        top = key.split('.')[0]
        return (SECTIONS.index(top) if top in SECTIONS else len(SECTIONS), key)

    keys = sorted((k for k in a.keys() | b.keys() if a.get(k) != b.get(k)), key=order)
    found = [f'{k}: {a.get(k, "(absent)")} vs {b.get(k, "(absent)")}' for k in keys[:limit]]
    if len(keys) > limit:
        found.append(f'... and {len(keys) - limit} more keys')
    return found


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


def arm_options(cfg: dict) -> dict:
    """The backbone options that make a run's arm, one spelling per arm: CB's where CB is on
    (its position always, its other options where they are not the defaults) and the
    ``timm_kwargs`` that are not at the default of timm's ``VisionTransformer`` constructor (an
    arm that writes ``qk_norm=False`` is the control)."""
    backbone = (cfg.get('model') or {}).get('backbone') or {}
    options = {}
    if backbone.get('cb', False):
        options['cb'] = True
        for name, default in CB_DEFAULTS.items():
            value = backbone.get(name, default)
            if name == 'cb_position' or value != default:
                options[name] = list(value) if name == 'cb_layers' else value
    defaults = _timm_defaults()
    changed = {k: v for k, v in (backbone.get('timm_kwargs') or {}).items()
               if k not in defaults or v != defaults[k]}
    if changed:
        options['timm_kwargs'] = changed
    return options


@functools.lru_cache(maxsize=1)
def _timm_defaults() -> dict:
    import inspect

    from timm.models.vision_transformer import VisionTransformer
    return {name: p.default for name, p in inspect.signature(VisionTransformer).parameters.items()
            if p.default is not inspect.Parameter.empty}


def arm_label(options: dict) -> str:
    """An arm by what it changes: ``'plain'`` for none, else e.g. ``'+CB(mlp)'``, ``'+reg4'``,
    ``'+CB(attn, scaled)+reg4'``."""
    parts = []
    if options.get('cb'):
        detail = [options.get('cb_position', 'mlp')]
        if options.get('cb_scaled'):
            detail.append('scaled')
        if options.get('cb_layers') is not None:
            detail.append(f"layers {list(options['cb_layers'])}")
        parts.append(f'+CB({", ".join(detail)})')
    for key, value in sorted((options.get('timm_kwargs') or {}).items()):
        parts.append('+' + (SHORT[key](value) if key in SHORT else f'{key}={value}'))
    return ''.join(parts) or CONTROL


def arm_order(label: str) -> tuple:
    """Sort key of arm labels: the control, then by how many changes, then by name."""
    return label != CONTROL, label.count('+'), label


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
    seed = (cfg.get('randomness') or {}).get('seed', cfg.get('seed'))
    checkpoint = (backbone.get('init_cfg') or {}).get('checkpoint') or model.get('pretrained')
    protocol = cfg.get('protocol') or ('from-scratch' if not checkpoint else 'as configured')
    options = arm_options(cfg)
    return dict(task=task, dataset=_dataset_type(cfg), model=MODEL_NAMES.get(head, head),
                arch=_arch(backbone), schedule=_schedule(cfg), cb=bool(backbone.get('cb', False)),
                arm=arm_label(options), arm_options=options, seed=seed, checkpoint=checkpoint,
                protocol=str(protocol), experiment=fingerprint(cfg))
