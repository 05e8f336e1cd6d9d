# The embedded default of tools/run_suite.py: the whole protocol at CPU size, on generated data in
# ImageNet, ADE20K and COCO layout (made on first use in data/smoke), with replicated pretraining.
# Three pretraining pairs: a plain and a +CB 4-block ViT pretrained with seeds 0, 1 and 2 and one
# recipe (the DeiT recipe of the full-size configs, at 64x64) on the ImageNet-layout set; then each
# arm of each pair fine-tuned from its own pair's checkpoint with UPerNet and with Mask R-CNN, two
# seeds each: 6 + 24 runs, within the time budget on 2 CPU cores, which is why the schedules below
# are cut (pretraining 8 of its config's 12 epochs, UPerNet 80 of 240 iterations, Mask R-CNN 40
# of 240).
smoke_data = True
upstream = dict(
    vit_tiny=dict(plain='configs/smoke/vit-tiny-p8_1xb32-12e_smoke-in1k-64x64.py',
                  cb='configs/smoke/vit-tiny-p8-cb_1xb32-12e_smoke-in1k-64x64.py'))
upstream_seeds = [0, 1, 2]
_seg = ('configs/smoke/upernet_vit-tiny-p8_1xb4-240iter_smoke-ade20k-64x64.py',
        'configs/smoke/upernet_vit-tiny-p8-cb_1xb4-240iter_smoke-ade20k-64x64.py')
_det = ('configs/smoke/mask-rcnn_vit-tiny-p8_fpn_1xb4-240iter_smoke-coco-128x128.py',
        'configs/smoke/mask-rcnn_vit-tiny-p8-cb_fpn_1xb4-240iter_smoke-coco-128x128.py')
downstream = [
    dict(plain=_seg[0], cb=_seg[1], weights='vit_tiny'),
    dict(plain=_det[0], cb=_det[1], weights='vit_tiny'),
]
seeds = [0, 1]
_up_schedule = {
    'train_cfg.max_epochs': 8, 'train_cfg.val_interval': 4,
    'default_hooks.checkpoint.interval': 4, 'param_scheduler.1.end': 8,
}
_seg_schedule = {
    'train_cfg.max_iters': 80, 'train_cfg.val_interval': 40,
    'default_hooks.checkpoint.interval': 40, 'param_scheduler.1.end': 80,
}
_det_schedule = {
    'train_cfg.max_iters': 40, 'train_cfg.val_interval': 20,
    'default_hooks.checkpoint.interval': 20, 'param_scheduler.1.end': 40,
    'param_scheduler.1.milestones': [30],
}
cfg_options = {upstream['vit_tiny']['plain']: _up_schedule,
               upstream['vit_tiny']['cb']: _up_schedule,
               _seg[0]: _seg_schedule, _seg[1]: _seg_schedule,
               _det[0]: _det_schedule, _det[1]: _det_schedule}
work_dir = 'work_dirs/suite_smoke'
# Robustness to common corruptions, evaluation only, for every fine-tuned run: a subset (one
# corruption of each benchmark family at severity 3, and clean), labelled as such in the report,
# to fit the time budget; the full preset runs the benchmark's 15 x 5.
robustness = dict(corruptions=['gaussian_noise', 'motion_blur', 'fog', 'jpeg_compression'],
                  severities=[3])
