# Semantic FPN + DeiT-Ti, plain arm, on ADE20K.
_base_ = '../_base_/fpn_vit_ade20k.py'
model = dict(
    backbone=dict(
        arch='deit_tiny_patch16_224',
        init_cfg=dict(checkpoint='pretrain/deit-t16_8xb128-300e_in1k-224.pth')),
    neck=[
        dict(type='MultiLevelNeck', in_channels=[192, 192, 192, 192], out_channels=256,
             scales=[4, 2, 1, 0.5]),
        dict(type='FPN', in_channels=[256, 256, 256, 256], out_channels=256, num_outs=4),
    ])
