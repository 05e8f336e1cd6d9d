"""Every config loads and builds; every +CB config differs from its plain twin in one key."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

CONFIGS = Path(__file__).resolve().parents[1] / 'configs'
ALL = sorted(p for p in CONFIGS.rglob('*.py') if not {'_base_', 'suites'} & set(p.parts))
CB = [p for p in ALL if '-cb' in p.name]


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


def test_the_config_set_is_complete():
    names = {p.relative_to(CONFIGS).as_posix() for p in ALL}
    for size in ('t', 's', 'b'):
        assert f'ade20k/upernet_deit-{size}16_8xb2-160k_ade20k-512x512.py' in names
        assert f'ade20k/fpn_deit-{size}16_8xb4-40k_ade20k-512x512.py' in names
        for schedule in ('1x', 'ms-3x'):
            assert f'coco/mask-rcnn_deit-{size}16_fpn_8xb2-{schedule}_coco.py' in names
    assert 'ade20k/upernet_deit-s16-ld_8xb2-160k_ade20k-512x512.py' in names
    assert sum('smoke' in n for n in names) == 4
    assert len(CB) * 2 == len(ALL), 'every config has a +CB twin'


@pytest.mark.parametrize('path', CB, ids=lambda p: p.name)
def test_cb_twin_differs_only_in_backbone_cb(path):
    twin = plain_twin(path)
    assert twin.exists(), f'{path.name} has no plain twin {twin.name}'
    plain, cb = (flatten(Config.fromfile(str(p)).to_dict()) for p in (twin, path))
    differing = {k for k in plain.keys() | cb.keys() if plain.get(k, '<absent>') != cb.get(k, '<absent>')}
    assert differing == {'model.backbone.cb'}
    assert plain['model.backbone.cb'] is False and cb['model.backbone.cb'] is True


@pytest.mark.parametrize('path', ALL, ids=lambda p: p.name)
def test_config_loads_and_its_model_builds(path):
    cfg = Config.fromfile(str(path))
    scope = cfg.default_scope
    assert scope in ('mmseg', 'mmdet')
    assert cfg.model.backbone.type == 'cb_transfer.ViT'
    assert cfg.custom_hooks == [dict(type='cb_transfer.ExactResumeHook')]
    if scope == 'mmseg':
        from mmseg.registry import MODELS
    else:
        from mmdet.registry import MODELS
    # on the meta device: the modules and their shapes are built, no memory is filled
    with DefaultScope.overwrite_default_scope(scope), torch.device('meta'):
        model = MODELS.build(cfg.model)
    assert type(model.backbone).__name__ == 'ViT'
    assert model.backbone.cb is cfg.model.backbone.cb
    if 'smoke' not in path.parts:
        assert cfg.model.backbone.init_cfg.checkpoint.startswith('pretrain/deit_')
