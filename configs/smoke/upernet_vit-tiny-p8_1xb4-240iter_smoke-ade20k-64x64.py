# The ADE20K UPerNet pipeline at CPU size: a 4-block ViT with 8x8 patches on 64x64 crops of the
# generated ADE20K-layout data (cb_transfer.data.make_ade20k, written to data/smoke/ade20k by the
# suite or `python -m cb_transfer.data`), trained from scratch. Same data set class, pipeline
# steps, heads, evaluator and runtime as the full-size configs; only sizes and schedule differ.
_base_ = '../_base_/upernet_vit_ade20k.py'
protocol = 'from-scratch'  # init_cfg=None; the suite feeds upstream checkpoints instead
crop_size = (64, 64)
data_root = 'data/smoke/ade20k'
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='deit_tiny_patch16_224', patch_size=8, embed_dims=96, depth=4, num_heads=3,
        img_size=crop_size, out_indices=(0, 1, 2, 3), drop_path_rate=0.0, init_cfg=None),
    decode_head=dict(in_channels=[96, 96, 96, 96], channels=64, pool_scales=(1, 2, 3)),
    auxiliary_head=dict(in_channels=96, channels=32))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(128, 64), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 64), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 240
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=20),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=20, end=max_iters, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=120)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=120, max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
