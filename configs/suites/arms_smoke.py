# Several ViT changes against one control, at CPU size on generated data (made on first use in
# data/smoke): plain, +CB, +reg4 (four register tokens) and +CB+reg4, a 2x2 factorial. Each arm
# is pretrained with one recipe on the ImageNet-layout set (one pretraining pair: seed 0) and
# fine-tuned from its own checkpoint with UPerNet on the ADE20K-layout set, two seeds: 4 + 8 runs.
# The table has three treatment rows against the plain control and the interaction row, whether
# CB's gain depends on the registers ((+CB+reg4 - +reg4) - (+CB - plain)); with one pretraining
# pair every interval is conditional on these checkpoints, and the report says so. Schedules the
# default's (pretraining 8 epochs, UPerNet 80 iterations), inherited.
#   cb-run-suite arms_smoke
_base_ = ['./smoke.py']  # the default's data, fine-tuning seeds and schedules
_up = 'configs/smoke/vit-tiny-p8{}_1xb32-12e_smoke-in1k-64x64.py'
_seg = 'configs/smoke/upernet_vit-tiny-p8{}_1xb4-240iter_smoke-ade20k-64x64.py'
_arms = dict(plain='', cb='-cb', reg4='-reg4', cb_reg4='-cb-reg4')
upstream = dict(_delete_=True, vit_tiny={arm: _up.format(tag) for arm, tag in _arms.items()})
upstream_seeds = [0]
downstream = [dict(weights='vit_tiny', **{arm: _seg.format(tag) for arm, tag in _arms.items()})]
_up_schedule = {{_base_._up_schedule}}
_seg_schedule = {{_base_._seg_schedule}}
cfg_options = dict(_delete_=True,
                   **{config: _up_schedule for config in upstream['vit_tiny'].values()},
                   **{_seg.format(tag): _seg_schedule for tag in _arms.values()})
robustness = None  # the default's stage is for its own arms
work_dir = 'work_dirs/suite_arms_smoke'
