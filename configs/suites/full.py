# The paper-scale matrix for GPU clusters: every full-size config pair (ADE20K UPerNet, with and
# without layer decay, and Semantic FPN; COCO Mask R-CNN 1x and 3x multi-scale; DeiT-Ti/-S/-B),
# three seeds each. Needs data/ade/ADEChallengeData2016, data/coco and pretrain/*.pth (README);
# the suite checks them all before it starts anything. Run with a launcher, e.g.
#   python tools/run_suite.py configs/suites/full.py --launcher slurm --partition gpu --gpus 8
_sizes = ('t', 's', 'b')
pairs = (
    [(f'configs/ade20k/upernet_deit-{s}16_8xb2-160k_ade20k-512x512.py',
      f'configs/ade20k/upernet_deit-{s}16-cb_8xb2-160k_ade20k-512x512.py') for s in _sizes]
    + [(f'configs/ade20k/upernet_deit-{s}16-ld_8xb2-160k_ade20k-512x512.py',
        f'configs/ade20k/upernet_deit-{s}16-ld-cb_8xb2-160k_ade20k-512x512.py') for s in ('s', 'b')]
    + [(f'configs/ade20k/fpn_deit-{s}16_8xb4-40k_ade20k-512x512.py',
        f'configs/ade20k/fpn_deit-{s}16-cb_8xb4-40k_ade20k-512x512.py') for s in _sizes]
    + [(f'configs/coco/mask-rcnn_deit-{s}16_fpn_8xb2-{sched}_coco.py',
        f'configs/coco/mask-rcnn_deit-{s}16-cb_fpn_8xb2-{sched}_coco.py')
       for sched in ('1x', 'ms-3x') for s in _sizes]
)
seeds = [0, 1, 2]
work_dir = 'work_dirs/suite_full'
