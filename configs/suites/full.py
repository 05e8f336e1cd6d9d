# The paper-scale matrix for GPU clusters, the paper's protocol with replicated pretraining:
# ImageNet-1k pretraining of DeiT-Ti/-S/-B, plain and +CB with one recipe (configs/imagenet/, the
# official DeiT recipe), then every full-size fine-tuning pair (ADE20K UPerNet, with and without
# layer decay, and Semantic FPN; COCO Mask R-CNN 1x and 3x multi-scale), each arm of each
# pretraining pair from the checkpoint its own pretraining run ended with.
#
# The unit of replication is the pretraining pair (cb_transfer.results.stats): pretraining is the
# largest source of variance, and no number of fine-tuning seeds separates CB from two lucky
# checkpoints. So where pretraining is affordable (Ti, S) there are three pairs, and fine-tuning
# seeds are spent where they buy something: two per pair for UPerNet (the headline rows, and the
# estimate of the seed-level variance), one per pair elsewhere (with the pair variance at least
# as large as the seed variance, a second seed per pair shrinks the gain's variance by far less
# than a third pair does). DeiT-B (about 424 V100 GPU-hours a pretraining run) gets one pair:
# its rows are conditional on those two checkpoints and the report says so. 14 pretraining and
# 86 fine-tuning runs; the README gives the GPU-hours. Needs data/imagenet,
# data/ade/ADEChallengeData2016 and data/coco (README); the suite checks them before it starts
# anything. Then each fine-tuned run is evaluated under the 15 benchmark corruptions at 5
# severities (an evaluation-only stage: mPC and rPC). On a Slurm cluster:
#   python tools/run_suite.py configs/suites/full.py --launcher slurm --partition gpu
# submits every run at once, each fine-tuning job waiting for its own pair's pretraining job.
upstream = {f'deit_{s}': dict(plain=f'configs/imagenet/deit-{s}16_8xb128-300e_in1k-224.py',
                              cb=f'configs/imagenet/deit-{s}16-cb_8xb128-300e_in1k-224.py',
                              seeds=[0, 1, 2] if s in ('t', 's') else [0])
            for s in ('t', 's', 'b')}


def _entries(task_configs, sizes, seeds):
    return [dict(plain=plain.format(s=s, cb=''), cb=plain.format(s=s, cb='-cb'),
                 weights=f'deit_{s}', seeds=seeds[s]) for plain in task_configs for s in sizes]


_upernet = 'configs/ade20k/upernet_deit-{s}16{cb}_8xb2-160k_ade20k-512x512.py'
_upernet_ld = 'configs/ade20k/upernet_deit-{s}16-ld{cb}_8xb2-160k_ade20k-512x512.py'
_fpn = 'configs/ade20k/fpn_deit-{s}16{cb}_8xb4-40k_ade20k-512x512.py'
_mask_rcnn = ['configs/coco/mask-rcnn_deit-{s}16{cb}_fpn_8xb2-1x_coco.py',
              'configs/coco/mask-rcnn_deit-{s}16{cb}_fpn_8xb2-ms-3x_coco.py']
_headline = dict(t=[0, 1], s=[0, 1], b=[0, 1])
_others = dict(t=[0], s=[0], b=[0, 1])
downstream = (_entries([_upernet], 'tsb', _headline) + _entries([_upernet_ld], 'sb', _others)
              + _entries([_fpn] + _mask_rcnn, 'tsb', _others))
del _entries
seeds = [0]
# every fine-tuned run evaluated under the benchmark's 15 corruptions x 5 severities (mPC, rPC)
robustness = dict()
work_dir = 'work_dirs/suite_full'
# what each Slurm job asks for (the command line overrides any of these)
slurm = dict(nodes=1, gpus_per_node=8, cpus_per_task=10, time_min=24 * 60, max_requeues=10)
