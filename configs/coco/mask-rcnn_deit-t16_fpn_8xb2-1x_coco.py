# Mask R-CNN + DeiT-Ti, plain arm, COCO, 1x schedule, single scale.
_base_ = '../_base_/mask-rcnn_vit_coco.py'
model = dict(
    backbone=dict(
        arch='deit_tiny_patch16_224',
        init_cfg=dict(checkpoint='pretrain/deit-t16_8xb128-300e_in1k-224.pth')),
    neck=[
        dict(type='mmseg.MultiLevelNeck', in_channels=[192, 192, 192, 192],
             out_channels=192, scales=[4, 2, 1, 0.5], norm_cfg={{_base_.neck_norm}}),
        dict(type='FPN', in_channels=[192, 192, 192, 192], out_channels=256,
             num_outs=5),
    ])
