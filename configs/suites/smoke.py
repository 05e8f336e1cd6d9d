# The embedded default of tools/run_suite.py: the whole protocol at CPU size, on generated data in
# ImageNet, ADE20K and COCO layout (made on first use in data/smoke). A plain and a +CB 4-block ViT
# are pretrained on the ImageNet-layout set with one recipe (the DeiT recipe of the full-size
# configs, at 64x64 for 12 epochs of 16 iterations), then each arm is fine-tuned from its own
# checkpoint with UPerNet and with Mask R-CNN, three seeds each: 2 + 12 runs, under 10 minutes on
# 2 CPU cores, which is why the fine-tuning schedules below are cut.
smoke_data = True
upstream = dict(
    vit_tiny=dict(plain='configs/smoke/vit-tiny-p8_1xb32-12e_smoke-in1k-64x64.py',
                  cb='configs/smoke/vit-tiny-p8-cb_1xb32-12e_smoke-in1k-64x64.py'))
_seg = ('configs/smoke/upernet_vit-tiny-p8_1xb4-240iter_smoke-ade20k-64x64.py',
        'configs/smoke/upernet_vit-tiny-p8-cb_1xb4-240iter_smoke-ade20k-64x64.py')
_det = ('configs/smoke/mask-rcnn_vit-tiny-p8_fpn_1xb4-240iter_smoke-coco-128x128.py',
        'configs/smoke/mask-rcnn_vit-tiny-p8-cb_fpn_1xb4-240iter_smoke-coco-128x128.py')
downstream = [
    dict(plain=_seg[0], cb=_seg[1], weights='vit_tiny'),
    dict(plain=_det[0], cb=_det[1], weights='vit_tiny'),
]
seeds = [0, 1, 2]
# The downstream configs train 240 iterations; the default trims them to fit its time budget.
_seg_schedule = {
    'train_cfg.max_iters': 120, 'train_cfg.val_interval': 60,
    'default_hooks.checkpoint.interval': 60, 'param_scheduler.1.end': 120,
}
_det_schedule = {
    'train_cfg.max_iters': 60, 'train_cfg.val_interval': 30,
    'default_hooks.checkpoint.interval': 30, 'param_scheduler.1.end': 60,
    'param_scheduler.1.milestones': [45],
}
cfg_options = {_seg[0]: _seg_schedule, _seg[1]: _seg_schedule,
               _det[0]: _det_schedule, _det[1]: _det_schedule}
work_dir = 'work_dirs/suite_smoke'
