# What every cb_transfer COCO Mask R-CNN config shares: mmdet's Mask R-CNN with the plain-ViT
# baseline recipe of ViT-Adapter's Mask R-CNN table (DeiT init, out_indices 2/5/8/11, AdamW 1e-4,
# weight decay 0.05 with none on position embedding, class token, norms and biases, 8 GPUs x 2
# images), with the backbone swapped for cb_transfer.ViT. A plain ViT has one stride, so mmseg's
# MultiLevelNeck makes the stride 4/8/16/32 pyramid that mmdet's FPN expects; it normalises its
# outputs (GroupNorm) as ViT-Adapter's and ViTDet's pyramids do: the blocks' outputs are the
# un-normalised residual stream, and without it Mask R-CNN's heads diverge. Unlike ViT-Adapter's
# baseline, every block uses global attention (no 14x14 windows): its reference numbers are a
# check of the order of magnitude, not of the last decimal.
neck_norm = dict(type='GN', num_groups=32)
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
# The protocol every table row names (cb_transfer.results): each arm is fine-tuned from its own
# ImageNet-1k checkpoint, both pretrained with one recipe (configs/imagenet/): the plain arm from
# the plain run, the +CB arm from the CB run. Files: pretrain/<ImageNet config name>.pth, the last
# checkpoint of that run (the suite feeds them from the upstream runs' work dirs by itself).
protocol = 'two-stage'
model = dict(
    backbone=dict(
        _delete_=True,
        type='cb_transfer.ViT',
        arch='deit_small_patch16_224',
        img_size=224,  # the pretraining grid; resized at run time to each padded batch
        out_indices=(2, 5, 8, 11),
        final_norm=False,
        drop_path_rate=0.1,
        cb=False,
        init_cfg=dict(type='Pretrained', checkpoint='pretrain/deit-s16_8xb128-300e_in1k-224.pth')),
    neck=[
        dict(type='mmseg.MultiLevelNeck', in_channels=[384, 384, 384, 384], out_channels=384,
             scales=[4, 2, 1, 0.5], norm_cfg=neck_norm),
        dict(type='FPN', in_channels=[384, 384, 384, 384], out_channels=256, num_outs=5),
    ])

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.),
        }))

# generators seeded by step, so that --resume continues exactly (cb_transfer.ExactResumeHook)
custom_hooks = [dict(type='cb_transfer.ExactResumeHook')]
