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
    else:  # the final norm
        depth = DEPTH + 1
    no_decay = param.ndim == 1 or name.endswith('.bias') or short in ('cls_token', 'pos_embed')
    return LR * DECAY ** (DEPTH + 1 - depth), 0.0 if no_decay else WD


def test_every_parameter_gets_its_layer_rate_and_weight_decay():
    model = tiny_segmentor()
    wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper', constructor='cb_transfer.LayerDecayOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=LR, weight_decay=WD),
        paramwise_cfg=dict(layer_decay_rate=DECAY)))
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
    assert group_of[id(names['backbone.blocks.3.mlp.fc1.weight'])]['lr'] == pytest.approx(LR * DECAY)
    assert group_of[id(names['backbone.blocks.0.cb.strength'])]['weight_decay'] == 0.0
    assert group_of[id(names['decode_head.conv_seg.weight'])]['lr'] == pytest.approx(LR)


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
