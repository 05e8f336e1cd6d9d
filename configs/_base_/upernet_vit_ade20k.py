# What every cb_transfer ADE20K UPerNet config shares: mmseg's own DeiT UPerNet recipe
# (mmseg::vit/vit_deit-s16_upernet_8xb2-160k_ade20k-512x512.py: UPerHead + auxiliary FCNHead on
# four stride-16 maps, no neck, AdamW 6e-5, weight decay 0.01, 1500 linear warm-up iterations,
# then poly, 8 GPUs x 2 images, 160k iterations) with the backbone swapped for cb_transfer.ViT.
_base_ = [
    'mmseg::_base_/models/upernet_vit-b16_ln_mln.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
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
    neck=None,
    decode_head=dict(num_classes=150, in_channels=[384, 384, 384, 384]),
    auxiliary_head=dict(num_classes=150, in_channels=384))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={
        'pos_embed': dict(decay_mult=0.),
        'cls_token': dict(decay_mult=0.),
        'norm': dict(decay_mult=0.)
    }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False)
]
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader

# generators seeded by step, so that --resume continues exactly (cb_transfer.ExactResumeHook)
custom_hooks = [dict(type='cb_transfer.ExactResumeHook')]
