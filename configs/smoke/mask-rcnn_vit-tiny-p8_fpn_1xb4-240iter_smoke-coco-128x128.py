# The COCO Mask R-CNN pipeline at CPU size: a 4-block ViT with 8x8 patches on 128x128 images of
# the generated COCO-layout data (cb_transfer.data.make_coco, written to data/smoke/coco), three
# classes, trained from scratch. Same data set class, evaluator (COCO bbox and segm AP through
# pycocotools), detector and runtime as the full-size configs; sizes, proposal counts and the
# schedule are small.
_base_ = '../_base_/mask-rcnn_vit_coco.py'
protocol = 'from-scratch'  # init_cfg=None; the suite feeds upstream checkpoints instead
data_root = 'data/smoke/coco/'
metainfo = dict(classes=('box', 'disc', 'triangle'))
model = dict(
    backbone=dict(
        arch='deit_tiny_patch16_224', patch_size=8, embed_dims=96, depth=4, num_heads=3,
        img_size=128, out_indices=(0, 1, 2, 3), drop_path_rate=0.0, init_cfg=None),
    neck=[
        # stride 8 in, strides 4/8/16/32 out
        dict(type='mmseg.MultiLevelNeck', in_channels=[96, 96, 96, 96], out_channels=96,
             scales=[2, 1, 0.5, 0.25], norm_cfg={{_base_.neck_norm}}),
        dict(type='FPN', in_channels=[96, 96, 96, 96], out_channels=64, num_outs=5),
    ],
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=3),
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(in_channels=64, conv_out_channels=64, num_classes=3)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=64)),
        rpn_proposal=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline,
                 filter_cfg=dict(filter_empty_gt=True, min_size=8)))
val_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

max_iters = 240
# AdamW at 1e-3 (the segmentation smoke rate) makes the RoI heads diverge; 2e-4 learns
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=20),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[200],
         gamma=0.1)
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=120)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=120, max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
