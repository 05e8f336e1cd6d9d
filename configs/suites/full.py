# The paper-scale matrix for GPU clusters, the paper's protocol: ImageNet-1k pretraining of
# DeiT-Ti/-S/-B, plain and +CB with one recipe (configs/imagenet/, the official DeiT recipe), then
# every full-size fine-tuning pair (ADE20K UPerNet, with and without layer decay, and Semantic FPN;
# COCO Mask R-CNN 1x and 3x multi-scale), each arm from the checkpoint its own pretraining run
# ended with, three seeds each: 6 + 84 runs. Needs data/imagenet, data/ade/ADEChallengeData2016 and
# data/coco (README); the suite checks them before it starts anything. On a Slurm cluster:
#   python tools/run_suite.py configs/suites/full.py --launcher slurm --partition gpu
# submits every run at once, fine-tuning jobs waiting for their pretraining job.
_sizes = ('t', 's', 'b')
upstream = {f'deit_{s}': dict(plain=f'configs/imagenet/deit-{s}16_8xb128-300e_in1k-224.py',
                              cb=f'configs/imagenet/deit-{s}16-cb_8xb128-300e_in1k-224.py')
            for s in _sizes}
downstream = (
    [dict(plain=f'configs/ade20k/upernet_deit-{s}16_8xb2-160k_ade20k-512x512.py',
          cb=f'configs/ade20k/upernet_deit-{s}16-cb_8xb2-160k_ade20k-512x512.py',
          weights=f'deit_{s}') for s in _sizes]
    + [dict(plain=f'configs/ade20k/upernet_deit-{s}16-ld_8xb2-160k_ade20k-512x512.py',
            cb=f'configs/ade20k/upernet_deit-{s}16-ld-cb_8xb2-160k_ade20k-512x512.py',
            weights=f'deit_{s}') for s in ('s', 'b')]
    + [dict(plain=f'configs/ade20k/fpn_deit-{s}16_8xb4-40k_ade20k-512x512.py',
            cb=f'configs/ade20k/fpn_deit-{s}16-cb_8xb4-40k_ade20k-512x512.py',
            weights=f'deit_{s}') for s in _sizes]
    + [dict(plain=f'configs/coco/mask-rcnn_deit-{s}16_fpn_8xb2-{sched}_coco.py',
            cb=f'configs/coco/mask-rcnn_deit-{s}16-cb_fpn_8xb2-{sched}_coco.py',
            weights=f'deit_{s}') for sched in ('1x', 'ms-3x') for s in _sizes]
)
seeds = [0, 1, 2]
work_dir = 'work_dirs/suite_full'
# what each Slurm job asks for (the command line overrides any of these)
slurm = dict(nodes=1, gpus_per_node=8, cpus_per_task=10, time_min=24 * 60, max_requeues=10)
