"""Every config loads and builds; every +CB config differs from its plain twin in CB alone (and, for
fine-tuning configs, in the checkpoint, which is the CB-pretrained one of the same size)."""
import functools
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

CONFIGS = Path(__file__).resolve().parents[1] / 'configs'
ALL = sorted(p for p in CONFIGS.rglob('*.py') if not {'_base_', 'suites'} & set(p.parts))
CB = [p for p in ALL if '-cb' in p.name]
IMAGENET = CONFIGS / 'imagenet'
CHECKPOINT = 'model.backbone.init_cfg.checkpoint'


def flatten(node, prefix=''):
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(flatten(value, f'{prefix}{key}.'))
        return out
    if isinstance(node, (list, tuple)):
        out = {}
        for i, value in enumerate(node):
            out.update(flatten(value, f'{prefix}{i}.'))
        return out
    return {prefix[:-1]: node}


def plain_twin(path: Path) -> Path:
    return path.with_name(path.name.replace('-cb', '', 1))


@functools.lru_cache(maxsize=None)
def resolved(path: Path) -> dict:
    return flatten(Config.fromfile(str(path)).to_dict())


def test_the_config_set_is_complete():
    names = {p.relative_to(CONFIGS).as_posix() for p in ALL}
    for size in ('t', 's', 'b'):
        assert f'imagenet/deit-{size}16_8xb128-300e_in1k-224.py' in names
        assert f'ade20k/upernet_deit-{size}16_8xb2-160k_ade20k-512x512.py' in names
        assert f'ade20k/fpn_deit-{size}16_8xb4-40k_ade20k-512x512.py' in names
        for schedule in ('1x', 'ms-3x'):
            assert f'coco/mask-rcnn_deit-{size}16_fpn_8xb2-{schedule}_coco.py' in names
    assert 'ade20k/upernet_deit-s16-ld_8xb2-160k_ade20k-512x512.py' in names
    assert sum('smoke' in n for n in names) == 10   # plain, +CB, +reg4, +CB+reg4 (upstream, seg)
    assert len(CB) * 2 == len(ALL), 'every config has a +CB twin'


@pytest.mark.parametrize('path', [p for p in ALL if '-reg4' in p.name], ids=lambda p: p.name)
def test_register_twin_differs_only_in_its_timm_kwargs(path):
    plain, registers = resolved(path.with_name(path.name.replace('-reg4', ''))), resolved(path)
    differing = {k for k in plain.keys() | registers.keys()
                 if plain.get(k, '<absent>') != registers.get(k, '<absent>')}
    assert differing == {'model.backbone.timm_kwargs.reg_tokens'}


@pytest.mark.parametrize('path', CB, ids=lambda p: p.name)
def test_cb_twin_differs_only_in_cb_and_its_checkpoint(path):
    twin = plain_twin(path)
    assert twin.exists(), f'{path.name} has no plain twin {twin.name}'
    plain, cb = resolved(twin), resolved(path)
    differing = {k for k in plain.keys() | cb.keys()
                 if plain.get(k, '<absent>') != cb.get(k, '<absent>')}
    assert plain['model.backbone.cb'] is False and cb['model.backbone.cb'] is True
    if plain.get(CHECKPOINT) is None:  # pretraining and the smoke configs: from scratch
        assert differing == {'model.backbone.cb'}
        return
    assert differing == {'model.backbone.cb', CHECKPOINT}
    # each arm names the checkpoint its own ImageNet config (same arch, same CB) ends with
    for arm, expected_cb in ((plain, False), (cb, True)):
        upstream = IMAGENET / Path(arm[CHECKPOINT]).with_suffix('.py').name
        assert arm[CHECKPOINT] == f'pretrain/{upstream.stem}.pth'
        assert upstream.is_file(), f'{arm[CHECKPOINT]} is no configs/imagenet config\'s output'
        pretraining = resolved(upstream)
        assert pretraining['model.backbone.cb'] is expected_cb
        assert pretraining['model.backbone.arch'] == arm['model.backbone.arch']


def test_the_pretraining_recipe_is_the_official_deit_one():
    cfg = Config.fromfile(str(IMAGENET / 'deit-s16_8xb128-300e_in1k-224.py'))
    assert cfg.model.backbone.drop_path_rate == 0.1
    assert cfg.model.backbone.out_type == 'cls_token'
    assert dict(type='EMAHook', momentum=4e-5, priority='ABOVE_NORMAL') in cfg.custom_hooks
    assert cfg.train_dataloader.sampler.type == 'RepeatAugSampler'
    assert cfg.param_scheduler[0].end == 5 and cfg.param_scheduler[1].begin == 5
    assert 'clip_grad' not in cfg.optim_wrapper
    assert cfg.train_dataloader.batch_size * 8 == 1024
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(5e-4 * 1024 / 512)
    assert cfg.train_cfg.max_epochs == 300


@pytest.mark.parametrize('path', ALL, ids=lambda p: p.name)
def test_config_loads_and_its_model_builds(path):
    cfg = Config.fromfile(str(path))
    scope = cfg.default_scope
    assert scope in ('mmseg', 'mmdet', 'mmpretrain')
    assert cfg.model.backbone.type == 'cb_transfer.ViT'
    assert dict(type='cb_transfer.ExactResumeHook') in cfg.custom_hooks
    registry = {'mmseg': 'mmseg.registry', 'mmdet': 'mmdet.registry',
                'mmpretrain': 'mmpretrain.registry'}[scope]
    MODELS = __import__(registry, fromlist=['MODELS']).MODELS
    # on the meta device: the modules and their shapes are built, no memory is filled
    with DefaultScope.overwrite_default_scope(scope), torch.device('meta'):
        model = MODELS.build(cfg.model)
    assert type(model.backbone).__name__ == 'ViT'
    assert model.backbone.cb is cfg.model.backbone.cb
    if scope == 'mmpretrain':
        assert model.backbone.out_type == 'cls_token' and cfg.protocol == 'pretraining'
    elif 'smoke' not in path.parts:
        assert cfg.protocol == 'two-stage'
        assert cfg.model.backbone.init_cfg.checkpoint.startswith('pretrain/deit-')


def test_base_config_shortcut_resolves_the_same_configs():
    """cb_transfer.config_lookup skips mmengine's model-zoo scan for _base_ files only: every
    config resolves exactly as mmengine alone resolves it."""
    import mmengine.config.config as mmengine_config
    shortcut = mmengine_config._get_external_cfg_path
    assert shortcut.wrapped is not None
    sample = [p for p in ALL if 'smoke' in p.parts][:2] + [CB[0], IMAGENET / CB[-1].name]
    try:
        mmengine_config._get_external_cfg_path = shortcut.wrapped
        alone = [Config.fromfile(str(p)).to_dict() for p in sample if p.exists()]
    finally:
        mmengine_config._get_external_cfg_path = shortcut
    assert alone == [Config.fromfile(str(p)).to_dict() for p in sample if p.exists()]
