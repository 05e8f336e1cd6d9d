# A check of the downstream recipe against the model zoos, not a CB comparison: the plain arms
# fine-tuned from the official DeiT ImageNet-1k checkpoints (README, "Pretrained weights"), for the
# rows whose public numbers the table's reference column gives (mmseg's UPerNet + DeiT-S/-B on
# ADE20K, ViT-Adapter's Mask R-CNN 3x + MS with DeiT-Ti/-S/-B on COCO). An official plain model
# against an in-house CB model would confound the recipe with CB, so this preset has no CB arm.
_official = dict(t='pretrain/deit_tiny_patch16_224-a1311bcf.pth',
                 s='pretrain/deit_small_patch16_224-cd65a155.pth',
                 b='pretrain/deit_base_patch16_224-b5f2ef4d.pth')
downstream = (
    [dict(plain=f'configs/ade20k/upernet_deit-{s}16_8xb2-160k_ade20k-512x512.py',
          weights=dict(plain=_official[s])) for s in ('s', 'b')]
    + [dict(plain=f'configs/coco/mask-rcnn_deit-{s}16_fpn_8xb2-ms-3x_coco.py',
            weights=dict(plain=_official[s])) for s in ('t', 's', 'b')]
)
seeds = [0, 1, 2]
work_dir = 'work_dirs/suite_zoo_check'
slurm = dict(nodes=1, gpus_per_node=8, cpus_per_task=10, time_min=24 * 60, max_requeues=10)
