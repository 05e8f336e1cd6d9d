"""``make check-full`` / ``tools/check_full.py``: every full-size config takes real steps.

Each full-size config (ImageNet pretraining at 224, ADE20K UPerNet and Semantic FPN at 512x512,
COCO Mask R-CNN 1x and 3x multi-scale at 1333x800) is built as it is, on generated data in the
real layouts written where the configs look for their data (``data/imagenet``,
``data/ade/ADEChallengeData2016``, ``data/coco`` under the check's folder), trained for two
iterations at batch 2 (UPerNet's pooling module has BatchNorm on 1x1 maps, which cannot train
on one image) and validated on one image, on this machine's device (the CPU here, a GPU where
there is one). What changes: batch size, schedule length (learning-rate schedules that would
begin after the check's two iterations are left out), no pretrained file (the check is about
the pipeline, not about numbers) and no checkpoint written; everything else (pipelines,
resolutions, models, heads, losses, optimizers, evaluators) is the config's own.
"""
import argparse
import gc
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from .config_lookup import CONFIGS

FAMILIES = ('imagenet', 'ade20k', 'coco')
BATCH, ITERATIONS = 2, 2
# the images each data set gets: as large as the real data's, a few of them
IMAGES = dict(imagenet=dict(num_train=BATCH * ITERATIONS, num_val=1, size=256),
              ade20k=dict(num_train=BATCH * ITERATIONS, num_val=1, size=512),
              coco=dict(num_train=BATCH * ITERATIONS, num_val=1, size=640))


def full_size_configs(families=FAMILIES, sizes: Optional[str] = None,
                      names: Optional[List[str]] = None) -> List[Path]:
    """The full-size configs of the families, sorted; ``sizes``: DeiT sizes to keep (e.g. 't');
    ``names``: config file names to keep."""
    configs = sorted(p for family in families for p in (CONFIGS / family).glob('*.py'))
    if sizes:
        configs = [p for p in configs if any(f'deit-{s}16' in p.name for s in sizes)]
    if names:
        unknown = set(names) - {p.name for p in configs}
        if unknown:
            raise SystemExit(f'not full-size configs (of {", ".join(families)}): '
                             f'{", ".join(sorted(unknown))}')
        configs = [p for p in configs if p.name in names]
    return configs


def write_data(root: Path) -> None:
    """The generated data sets where the full-size configs look for them, under ``root``."""
    from .data import make_ade20k, make_coco, make_imagenet
    make_imagenet(root / 'data' / 'imagenet', **IMAGES['imagenet'])
    make_ade20k(root / 'data' / 'ade' / 'ADEChallengeData2016', **IMAGES['ade20k'])
    from mmdet.datasets import CocoDataset
    # every COCO category in the annotations, as the evaluator maps the 80 labels to them
    make_coco(root / 'data' / 'coco', classes=CocoDataset.METAINFO['classes'],
              **IMAGES['coco'])


def check_options(cfg) -> dict:
    """What the check changes in a config: batch 2, two iterations, one validation image, no
    pretrained file, no checkpoint, no schedule beginning after the end."""
    options = {'train_dataloader.batch_size': BATCH, 'train_dataloader.num_workers': 0,
               'train_dataloader.persistent_workers': False,
               'val_dataloader.batch_size': 1, 'val_dataloader.num_workers': 0,
               'val_dataloader.persistent_workers': False,
               'default_hooks.checkpoint': None, 'randomness.seed': 0,
               'model.backbone.init_cfg': None}
    if cfg.train_cfg.get('max_iters') is not None:
        options.update({'train_cfg.max_iters': ITERATIONS, 'train_cfg.val_interval': ITERATIONS})
    else:  # an epoch of BATCH x ITERATIONS images
        options.update({'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 1})
    options['param_scheduler'] = [
        s for s in cfg.get('param_scheduler') or []
        if s.get('begin', 0) < (1 if s.get('by_epoch', True) else ITERATIONS)]
    return options


@dataclass
class Outcome:
    config: str
    ok: bool
    seconds: float
    detail: str


def check(config: Path) -> Outcome:
    """Train two iterations and validate one image with ``config``."""
    from .launch import load_config, train
    start = time.time()
    try:
        cfg = load_config(str(config), work_dir=f'work_dirs/{config.stem}')
        cfg.merge_from_dict(check_options(cfg))
        runner = train(cfg)
        metrics = runner.message_hub.log_scalars
        shown = [k for k in metrics if k.startswith('val/')
                 and k not in ('val/time', 'val/data_time')][:3]
        detail = f'{runner.iter} iterations, validated: ' + (
            ', '.join(f'{k[4:]} {metrics[k].current():.3g}' for k in shown) or 'yes')
        del runner
        return Outcome(config.name, True, time.time() - start, detail)
    except Exception as err:  # one broken config must not hide the others
        traceback.print_exc()
        return Outcome(config.name, False, time.time() - start, f'{type(err).__name__}: {err}')
    finally:
        gc.collect()


def main(argv: Optional[List[str]] = None) -> int:
    from .launch import forget_tools_dir
    forget_tools_dir()
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--families', nargs='+', choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument('--sizes', help="DeiT sizes to check (e.g. 't' or 'tsb'; default all)")
    parser.add_argument('--configs', nargs='+', metavar='NAME.py',
                        help='config file names to check (default all)')
    parser.add_argument('--work-dir', default='work_dirs/check_full',
                        help='where the data and the runs go')
    args = parser.parse_args(argv)
    configs = full_size_configs(args.families, args.sizes, args.configs)
    root = Path(args.work_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.chdir(root)  # the configs read data/... relative to where they run
    write_data(root)
    import torch
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'
    print(f'{len(configs)} full-size configs, {ITERATIONS} training iterations at batch {BATCH} and 1 '
          f'validation image each, on {device}; data and runs in {root}', flush=True)
    outcomes = []
    for index, config in enumerate(configs, 1):
        outcome = check(config)
        outcomes.append(outcome)
        print(f'[{index}/{len(configs)}] {"ok  " if outcome.ok else "FAIL"} {config.name} '
              f'({outcome.seconds:.0f} s): {outcome.detail}', flush=True)
    failed = [o for o in outcomes if not o.ok]
    total = sum(o.seconds for o in outcomes)
    print(f'{len(outcomes) - len(failed)} of {len(outcomes)} configs took their steps in '
          f'{total:.0f} s' + (f'; failed: {", ".join(o.config for o in failed)}' if failed else ''))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
