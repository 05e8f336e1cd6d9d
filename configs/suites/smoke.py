# The embedded default of tools/run_suite.py: the whole benchmark at CPU size. Generated ADE20K-
# and COCO-layout data (made on first use in data/smoke), UPerNet and Mask R-CNN on a 4-block ViT,
# plain and +CB, three seeds each: 12 runs, under 10 minutes on 2 CPU cores. Detection is cut to
# 120 iterations here (its config trains 240) to fit that budget.
smoke_data = True
pairs = [
    ('configs/smoke/upernet_vit-tiny-p8_1xb4-240iter_smoke-ade20k-64x64.py',
     'configs/smoke/upernet_vit-tiny-p8-cb_1xb4-240iter_smoke-ade20k-64x64.py'),
    ('configs/smoke/mask-rcnn_vit-tiny-p8_fpn_1xb4-240iter_smoke-coco-128x128.py',
     'configs/smoke/mask-rcnn_vit-tiny-p8-cb_fpn_1xb4-240iter_smoke-coco-128x128.py'),
]
seeds = [0, 1, 2]
_det = {
    'train_cfg.max_iters': 120, 'train_cfg.val_interval': 120,
    'default_hooks.checkpoint.interval': 60, 'param_scheduler.1.end': 120,
    'param_scheduler.1.milestones': [100],
}
cfg_options = {pairs[1][0]: _det, pairs[1][1]: _det}
work_dir = 'work_dirs/suite_smoke'
