# The ImageNet-1k pretraining pipeline at CPU size: the 4-block ViT with 8x8 patches of the other
# smoke configs, trained from scratch on 64x64 images of the generated ImageNet-layout data
# (cb_transfer.data.make_imagenet, written to data/smoke/imagenet: 5 classes, 512 training images)
# with the full-size DeiT recipe (_base_/deit_in1k.py): RandAugment, random erasing, Mixup/CutMix,
# label smoothing, repeated augmentation, EMA, AdamW with warm-up and cosine decay, epoch-based,
# through mmpretrain's ImageNet data set, classifier, head and evaluator. What differs is size:
# 64x64 inputs, 5 classes, batch 32, 12 epochs of 16 iterations instead of 300 of 1251 (warm-up
# 1 epoch instead of 5), the EMA's window shrunk with the schedule (momentum 0.02, about 50
# iterations, where DeiT's 4e-5 spans 25k of its 375k), and top-1 only (with 5 classes top-5 is
# always 100%).
_base_ = '../_base_/deit_in1k.py'
data_root = 'data/smoke/imagenet'
classes = ('building', 'sky', 'floor', 'tree', 'ceiling')
model = dict(
    backbone=dict(arch='deit_tiny_patch16_224', patch_size=8, embed_dims=96, depth=4, num_heads=3,
                  img_size=64),
    head=dict(num_classes=len(classes), in_channels=96))
data_preprocessor = dict(num_classes=len(classes))

bgr_mean = [103.53, 116.28, 123.675]
bgr_std = [57.375, 57.12, 58.395]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=64, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10,
         magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    dict(type='RandomErasing', erase_prob=0.25, mode='rand', min_area_ratio=0.02,
         max_area_ratio=1 / 3, fill_color=bgr_mean, fill_std=bgr_std),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=73, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=64),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

max_epochs = 12
warmup_epochs = 1
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=4)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=16),
    checkpoint=dict(type='CheckpointHook', interval=4, max_keep_ckpts=2))

custom_hooks = [
    dict(type='EMAHook', momentum=0.02, priority='ABOVE_NORMAL'),
    dict(type='cb_transfer.ExactResumeHook'),
]
randomness = dict(seed=0)
