# A different question from the paper's, under its own name: CB switched on at fine-tuning. Both
# arms of every fine-tuning pair start from the same plain DeiT checkpoint (the plain pretraining
# runs of configs/suites/full.py, same recipe and pairs); the +CB arm adds CB only downstream. Its
# rows are labelled cb-at-finetune and never share a row with the two-stage protocol. With
# --work-dir work_dirs/suite_full the plain pretraining runs of the full suite are reused.
upstream = {f'deit_{s}': dict(plain=f'configs/imagenet/deit-{s}16_8xb128-300e_in1k-224.py',
                              seeds=[0, 1, 2] if s in ('t', 's') else [0])
            for s in ('t', 's', 'b')}
downstream = (
    [dict(plain=f'configs/ade20k/upernet_deit-{s}16_8xb2-160k_ade20k-512x512.py',
          cb=f'configs/ade20k/upernet_deit-{s}16-cb_8xb2-160k_ade20k-512x512.py',
          weights=dict(plain=f'deit_{s}.plain', cb=f'deit_{s}.plain'),
          seeds=[0] if s in ('t', 's') else [0, 1]) for s in ('t', 's', 'b')]
    + [dict(plain=f'configs/coco/mask-rcnn_deit-{s}16_fpn_8xb2-1x_coco.py',
            cb=f'configs/coco/mask-rcnn_deit-{s}16-cb_fpn_8xb2-1x_coco.py',
            weights=dict(plain=f'deit_{s}.plain', cb=f'deit_{s}.plain'),
            seeds=[0] if s in ('t', 's') else [0, 1]) for s in ('t', 's', 'b')]
)
seeds = [0]
work_dir = 'work_dirs/suite_cb_at_finetune'
slurm = dict(nodes=1, gpus_per_node=8, cpus_per_task=10, time_min=24 * 60, max_requeues=10)
