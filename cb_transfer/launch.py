"""Training and testing entry points behind ``tools/train.py`` and ``tools/test.py``.

One code path for classification, segmentation and detection: the config's ``default_scope``
(``mmpretrain``, ``mmseg`` or ``mmdet``, set by the base configs it inherits) decides which
registries the Runner uses. The suite (``cb_transfer.suite``) calls these same functions.

On a machine without CUDA, a distributed launch (``--launcher pytorch`` under torchrun, or
``--launcher slurm`` under srun) runs on the gloo backend: mmengine's own set-up calls
``torch.cuda.set_device`` and wraps the model with ``device_ids=[LOCAL_RANK]``, both of which fail
on CPU (SETUP_NOTES trap 4), so we start the process group ourselves and wrap without device ids.
"""
import argparse
import contextlib
import gc
import itertools
import logging
import os
import os.path as osp
import time
from typing import Iterator, List, Optional, Sequence

import torch
import torch.distributed as dist
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .engine.checkpoints import find_resumable_checkpoint

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--work-dir', help='where to save logs and checkpoints '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. train_cfg.max_iters=100 '
                        'randomness.seed=1')
    parser.add_argument('--pretrained', metavar='CHECKPOINT',
                        help='initialise the backbone from this checkpoint (sets '
                        'model.backbone.init_cfg, also where the config trains from scratch)')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(config: str, work_dir: Optional[str] = None, cfg_options: Optional[dict] = None,
                launcher: str = 'none', pretrained: Optional[str] = None) -> Config:
    """Read a config the way mmseg's and mmdet's tools do, and prepare it for this machine.

    Args:
        pretrained: Initialise the backbone from this checkpoint file (``model.backbone.init_cfg``
            becomes ``dict(type='Pretrained', checkpoint=pretrained)``, also where the config
            trains from scratch).
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f"config file '{config}' not found")
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if pretrained is not None:
        cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=pretrained)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    if launcher != 'none' and not torch.cuda.is_available():
        _prepare_cpu_distributed(cfg, launcher)
    return cfg


def _replace_sync_bn(node):
    """SyncBN has no CPU kernel; a CPU process group trains with per-process BN instead."""
    if isinstance(node, dict):
        if node.get('type') in ('SyncBN', 'MMSyncBN'):
            node['type'] = 'BN'
        for value in node.values():
            _replace_sync_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _replace_sync_bn(value)


def export_slurm_environment() -> None:
    """torch.distributed's variables (``env://``: rank, world size, local rank, master address
    and port) from the Slurm task this process is, through submitit's
    ``TorchDistributedEnvironment``: the master is the job's first node, the port one the job's
    tasks agree on (``MASTER_PORT`` where set). CUDA's visible devices are left alone: each task
    picks its GPU by its local rank."""
    from submitit.helpers import TorchDistributedEnvironment

    # submitit recognises its own jobs by this variable; a task that srun started by hand
    # (tools/slurm_train.sh) is the same kind of Slurm task
    os.environ.setdefault('SUBMITIT_EXECUTOR', 'slurm')
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)


def _prepare_cpu_distributed(cfg: Config, launcher: str) -> None:
    if launcher not in ('pytorch', 'slurm'):
        raise RuntimeError(f"--launcher {launcher} needs CUDA; on a CPU machine use torchrun "
                           "with --launcher pytorch (tools/dist_train.sh), or Slurm, which run "
                           "on gloo")
    if not dist.is_initialized():
        if launcher == 'slurm':
            export_slurm_environment()
        dist.init_process_group(backend='gloo')
    cfg.env_cfg = dict(cfg.get('env_cfg', {}), dist_cfg=dict(backend='gloo'))
    cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None,
                                 broadcast_buffers=False,
                                 find_unused_parameters=cfg.get('find_unused_parameters', False))
    _replace_sync_bn(cfg.model)
    print_log(f'CPU distributed run ({launcher}): gloo backend, rank {dist.get_rank()} of '
              f'{dist.get_world_size()}, SyncBN replaced by BN', logger='current')


@contextlib.contextmanager
def distributed_session() -> Iterator[None]:
    """End the process group this process joined (ours on CPU, mmengine's on GPUs) when the
    block ends, while the interpreter is still alive: after a barrier when the block ended well,
    so that no rank leaves while another still talks to it; at once after an error.

    Why while alive: gloo's worker threads free a finished collective (and the tensors it holds)
    after the caller has moved on. If the interpreter is already finalizing then, freeing a
    tensor takes the GIL, Python ends the thread, and its forced unwind through a noexcept
    destructor aborts the process ("terminate called without an active exception", SIGABRT;
    a core dump shows ProcessGroupGloo::runLoop destroying an AsyncBarrierWork while the main
    thread is in Py_FinalizeEx). The group's destructor drains its work queue and joins those
    threads; it runs only once nothing holds the group, and the runners' distributed models,
    which do, live in reference cycles: they are collected first.
    """
    ended_well = False
    try:
        yield
        ended_well = True
    finally:
        if dist.is_available() and dist.is_initialized():
            gc.collect()  # runners and their distributed models hold the group
            if ended_well:
                dist.barrier()
            dist.destroy_process_group()
            gc.collect()


_runners_built = itertools.count(1)


def build_runner(cfg: Config) -> Runner:
    """mmengine's Runner for ``cfg``. Several can be built in one process (the suite does): each
    gets its own experiment name and visualizer, which mmengine keeps as named singletons, so that
    a later run does not write its logs into an earlier run's folder."""
    count = next(_runners_built)
    stem = osp.splitext(osp.basename(cfg.filename or 'config'))[0]
    cfg.experiment_name = f'{stem}_{time.strftime("%Y%m%d_%H%M%S")}_{os.getpid()}_{count}'
    if cfg.get('visualizer'):
        cfg.visualizer.name = cfg.experiment_name
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def train(cfg: Config, resume: bool = False, amp: bool = False, hooks: Sequence = ()) -> Runner:
    """Train (and validate, as the config's loop says) with mmengine's Runner.

    ``hooks`` are extra mmengine hooks (instances, not configs: they stay out of the dumped config).

    With ``resume``, training continues from the newest checkpoint in the work dir that reads back
    whole (:mod:`cb_transfer.engine.checkpoints`); unreadable newer ones are skipped and named. With
    none, it starts from the beginning.
    """
    if amp:
        if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in the config.', logger='current',
                      level=logging.WARNING)
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    cfg.resume, notes = False, []
    if resume:
        checkpoint, skipped = find_resumable_checkpoint(cfg.work_dir)
        notes = [(logging.WARNING, f'resume: {note}') for note in skipped]
        if checkpoint is None:
            notes.append((logging.INFO, f'resume: no readable checkpoint in {cfg.work_dir}; '
                          'starting from the beginning'))
        else:
            notes.append((logging.INFO, f'resume: from {checkpoint}'))
            cfg.resume, cfg.load_from = True, str(checkpoint)
    runner = build_runner(cfg)
    for level, note in notes:
        runner.logger.log(level, note)
    for hook in hooks:
        runner.register_hook(hook)
    runner.train()
    return runner


def test(cfg: Config, checkpoint: str) -> dict:
    """Evaluate ``checkpoint`` on the config's test set; returns the metrics."""
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f"checkpoint '{checkpoint}' not found")
    cfg.load_from = checkpoint
    return build_runner(cfg).test()


def main_train(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description='Train a cb_transfer (mmseg or mmdet) config')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--resume', action='store_true',
                        help='resume from the newest readable checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    add_common_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    with distributed_session():
        cfg = load_config(args.config, args.work_dir, args.cfg_options, args.launcher,
                          pretrained=args.pretrained)
        train(cfg, resume=args.resume, amp=args.amp)


def main_test(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description='Test a checkpoint of a cb_transfer config')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    add_common_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    with distributed_session():
        cfg = load_config(args.config, args.work_dir, args.cfg_options, args.launcher,
                          pretrained=args.pretrained)
        test(cfg, args.checkpoint)
