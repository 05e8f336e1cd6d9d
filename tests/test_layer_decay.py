"""cb_transfer.LayerDecayOptimWrapperConstructor on an mmseg model with the CB backbone."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

DECAY, LR, WD, DEPTH = 0.5, 1e-3, 0.05, 4


def tiny_segmentor():
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    return MODELS.build(dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', size=(64, 64)),
        backbone=dict(type='cb_transfer.ViT', arch='deit_tiny_patch16_224', embed_dims=64,
                      depth=DEPTH, num_heads=2, img_size=64, out_indices=(0, 1, 2, 3),
                      final_norm=True, cb=True, cb_scaled=True),
        neck=dict(type='MultiLevelNeck', in_channels=[64] * 4, out_channels=64,
                  scales=[4, 2, 1, 0.5]),
        decode_head=dict(type='UPerHead', in_channels=[64] * 4, in_index=[0, 1, 2, 3],
                         pool_scales=(1, 2), channels=32, num_classes=4,
                         norm_cfg=dict(type='BN'), loss_decode=dict(type='CrossEntropyLoss'))))


def expected_lr_and_wd(name, param):
    """Written out from the rule, independently of get_layer_depth."""
    short = name[len('backbone.'):] if name.startswith('backbone.') else None
    if short is None:  # neck, head
        depth = DEPTH + 1
    elif short in ('cls_token', 'pos_embed') or short.startswith('patch_embed.'):
        depth = 0
    elif short.startswith('blocks.'):
        depth = int(short.split('.')[1]) + 1
    else:  # the final norm: with the last block, as timm's group_matcher groups it
        depth = DEPTH
    no_decay = param.ndim == 1 or name.endswith('.bias') or short in ('cls_token', 'pos_embed')
    return LR * DECAY ** (DEPTH + 1 - depth), 0.0 if no_decay else WD


def test_every_parameter_gets_its_layer_rate_and_weight_decay():
    model = tiny_segmentor()
    wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper', constructor='cb_transfer.LayerDecayOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=LR, weight_decay=WD),
        paramwise_cfg=dict(layer_decay_rate=DECAY, flat_decay_mult=0.0)))
    group_of = {}
    for group in wrapper.optimizer.param_groups:
        for param in group['params']:
            assert id(param) not in group_of, 'a parameter is in two groups'
            group_of[id(param)] = group
    names = dict(model.named_parameters())
    assert len(group_of) == len(names)
    for name, param in names.items():
        lr, wd = expected_lr_and_wd(name, param)
        group = group_of[id(param)]
        assert group['lr'] == pytest.approx(lr), name
        assert group['weight_decay'] == wd, name
    # spot checks of the rule's ends
    assert group_of[id(names['backbone.pos_embed'])]['lr'] == pytest.approx(LR * DECAY ** 5)
    last_block = group_of[id(names['backbone.blocks.3.mlp.fc1.weight'])]
    assert last_block['lr'] == pytest.approx(LR * DECAY)
    assert group_of[id(names['backbone.blocks.0.cb.strength'])]['weight_decay'] == 0.0
    assert group_of[id(names['decode_head.conv_seg.weight'])]['lr'] == pytest.approx(LR)


def groups_by_name(wrapper, model):
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (g['lr'], g['weight_decay']) for g in wrapper.optimizer.param_groups
            for p in g['params']}


def test_the_groups_are_mmpretrains_constructor_given_the_backbones_depths():
    """custom_keys, norm_decay_mult and flat_decay_mult mean what they mean in mmpretrain."""
    from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor
    model = tiny_segmentor()
    paramwise = dict(layer_decay_rate=DECAY, norm_decay_mult=0.0, bias_decay_mult=0.5,
                     custom_keys={'decode_head': dict(decay_mult=0.25)})
    optimizer = dict(type='AdamW', lr=LR, weight_decay=WD)
    ours = build_optim_wrapper(model, dict(
        type='OptimWrapper', constructor='cb_transfer.LayerDecayOptimWrapperConstructor',
        optimizer=optimizer, paramwise_cfg=paramwise))
    # mmpretrain's own, handed the depth function and the backbone's no-decay names by hand
    theirs = LearningRateDecayOptimWrapperConstructor(
        dict(type='OptimWrapper', optimizer=optimizer),
        dict(paramwise, custom_keys={'backbone.cls_token': dict(decay_mult=0.0),
                                     'backbone.pos_embed': dict(decay_mult=0.0),
                                     'backbone.reg_token': dict(decay_mult=0.0),
                                     'backbone.dist_token': dict(decay_mult=0.0),
                                     **paramwise['custom_keys']}))
    params = []
    theirs.add_params(params, model, get_layer_depth=lambda name: model.backbone.get_layer_depth(
        name, 'backbone.'))
    names = {id(p): n for n, p in model.named_parameters()}
    expected = {names[id(g['params'][0])]: (g['lr'], g['weight_decay']) for g in params}
    found = groups_by_name(ours, model)
    assert set(found) == set(expected)
    for name, (lr, wd) in expected.items():
        assert found[name] == pytest.approx((lr, wd)), name
    assert found['decode_head.conv_seg.weight'][1] == pytest.approx(WD * 0.25)
    assert found['backbone.cls_token'][1] == 0.0


def test_registers_and_the_class_token_are_in_the_stem():
    from cb_transfer.models import ViT
    model = ViT(arch='deit_tiny_patch16_224', depth=DEPTH, timm_kwargs=dict(reg_tokens=4))
    depth = lambda name: model.get_layer_depth(name, 'backbone.')  # noqa: E731
    for name in ('reg_token', 'cls_token', 'pos_embed', 'patch_embed.proj.weight'):
        assert depth(f'backbone.{name}') == (0, DEPTH + 2), name
    assert depth('backbone.blocks.2.attn.qkv.weight') == (3, DEPTH + 2)
    assert 'reg_token' in model.no_weight_decay()


def test_mmseg_own_constructor_refuses_this_backbone_but_ours_does_not_need_a_list():
    model = tiny_segmentor()
    with pytest.raises(NotImplementedError):
        build_optim_wrapper(model, dict(
            type='OptimWrapper', constructor='mmseg.LearningRateDecayOptimizerConstructor',
            optimizer=dict(type='AdamW', lr=LR, weight_decay=WD),
            paramwise_cfg=dict(num_layers=DEPTH, decay_rate=DECAY, decay_type='layer_wise')))


def test_a_backbone_without_layer_depths_is_refused():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match='get_layer_depth'):
        build_optim_wrapper(model, dict(
            type='OptimWrapper', constructor='cb_transfer.LayerDecayOptimWrapperConstructor',
            optimizer=dict(type='AdamW', lr=LR), paramwise_cfg=dict(layer_decay_rate=DECAY)))
