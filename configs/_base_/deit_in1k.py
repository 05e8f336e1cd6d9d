# What every cb_transfer ImageNet-1k config shares: mmpretrain's DeiT classifier
# (mmpretrain::deit/deit-small_4xb256_in1k.py and the bases it inherits: ImageClassifier,
# VisionTransformerClsHead, RandAugment m9-mstd0.5, random erasing 0.25, Mixup 0.8 / CutMix 1.0,
# label smoothing 0.1, bicubic 224 crops, AdamW 5e-4 x batch / 512 with weight decay 0.05 and none
# on norms, biases, position embedding and class token, cosine to 1e-5, 300 epochs) with the
# backbone swapped for cb_transfer.ViT, and the official DeiT recipe (the defaults of
# facebookresearch/deit main.py, the CB paper's baseline) where mmpretrain's DeiT configs differ:
#
#   what                    official DeiT (used here)      mmpretrain's DeiT configs
#   drop path               0.1 for every size              0.1 for -B; none for -S and -Ti
#   EMA of the weights      on, decay 0.99996               on for -B; off for -S and -Ti
#   repeated augmentation   3 repeats (RepeatAugSampler)    off (DefaultSampler)
#   warm-up                 5 epochs, from lr 1e-6          20 epochs, from lr 1e-6
#   gradient clipping       none                            max norm 5.0
#
# Both arms of a pair use this recipe unchanged; they differ in model.backbone.cb alone. The
# checkpoint a run ends with holds the EMA weights in 'state_dict' (mmengine's EMAHook swaps them
# in when saving), and it is what the downstream configs of the same arm load.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
protocol = 'pretraining'
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='cb_transfer.ViT',
        arch='deit_small_patch16_224',
        img_size=224,
        out_type='cls_token',
        drop_path_rate=0.1,
        cb=False,
        init_cfg=None),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=1000,
        in_channels=384,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ],
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

# 8 GPUs x 128 images = 1024, DeiT's batch; repeated augmentation as DeiT's RASampler
train_dataloader = dict(batch_size=128, sampler=dict(type='RepeatAugSampler', shuffle=True,
                                                    num_repeats=3))
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        '.cls_token': dict(decay_mult=0.0),
        '.pos_embed': dict(decay_mult=0.0),
    }))
warmup_epochs = 5
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=warmup_epochs),
]
# EMA of the weights as DeiT's ModelEma (momentum = 1 - decay); generators seeded by step, so
# that --resume continues exactly (cb_transfer.ExactResumeHook)
custom_hooks = [
    dict(type='EMAHook', momentum=4e-5, priority='ABOVE_NORMAL'),
    dict(type='cb_transfer.ExactResumeHook'),
]
