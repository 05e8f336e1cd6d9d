# What every cb_transfer ADE20K Semantic FPN config shares: mmseg's Semantic FPN (FPN neck +
# FPNHead) with the PVT/PoolFormer recipe that mmseg ships for transformer backbones
# (mmseg::poolformer/fpn_poolformer_s12_8xb4-40k_ade20k-512x512.py: AdamW 2e-4, weight decay
# 1e-4, poly 0.9, 8 GPUs x 4 images, 40k iterations). A plain ViT has one stride, so mmseg's
# MultiLevelNeck first makes the stride 4/8/16/32 pyramid that FPN expects.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
]
# The protocol every table row names (cb_transfer.results): each arm is fine-tuned from its own
# ImageNet-1k checkpoint, both pretrained with one recipe (configs/imagenet/): the plain arm from
# the plain run, the +CB arm from the CB run. Files: pretrain/<ImageNet config name>.pth, the last
# checkpoint of that run (the suite feeds them from the upstream runs' work dirs by itself).
protocol = 'two-stage'
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='cb_transfer.ViT',
        arch='deit_small_patch16_224',
        img_size=crop_size,
        out_indices=(2, 5, 8, 11),
        final_norm=False,
        drop_path_rate=0.1,
        cb=False,
        init_cfg=dict(type='Pretrained', checkpoint='pretrain/deit-s16_8xb128-300e_in1k-224.pth')),
    neck=[
        dict(type='MultiLevelNeck', in_channels=[384, 384, 384, 384], out_channels=256,
             scales=[4, 2, 1, 0.5]),
        dict(type='FPN', in_channels=[256, 256, 256, 256], out_channels=256, num_outs=4),
    ],
    decode_head=dict(num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0002, weight_decay=0.0001))
param_scheduler = [
    dict(type='PolyLR', power=0.9, begin=0, end=40000, eta_min=0.0, by_epoch=False)
]
train_dataloader = dict(batch_size=4)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader

# generators seeded by step, so that --resume continues exactly (cb_transfer.ExactResumeHook)
custom_hooks = [dict(type='cb_transfer.ExactResumeHook')]
