"""``make check-full`` / ``tools/check_full.py``: every full-size config takes real steps, on
generated data or, as a rehearsal before booking a cluster, on the user's own.

Each full-size config (ImageNet pretraining at 224, ADE20K UPerNet and Semantic FPN at 512x512,
COCO Mask R-CNN 1x and 3x multi-scale at 1333x800) is built as it is, trained for two iterations
at batch 2 (UPerNet's pooling module has BatchNorm on 1x1 maps, which cannot train on one image)
and validated on two images, on this machine's device (the CPU here, a GPU where there is one).

The data: by default generated sets in the real layouts (``cb_transfer.data``: odd sizes,
portrait and landscape, grayscale and CMYK files, crowd and empty COCO images, ...), written
under the check's folder. With ``--imagenet``, ``--ade20k`` or ``--coco ROOT`` the configs of
those families read the user's data instead (the rehearsal): each root is first inspected
against each config's data sets (:func:`cb_transfer.data.layout.inspect_root`: layout,
annotation files, class labels) and a config whose root has problems is not run; they are
listed with what to do. Either way the data sets' ``data_root`` becomes the root and they keep
their first ``--train-images`` and ``--val-images`` images (mmengine's ``indices``).

What else changes: batch size, schedule length (learning-rate schedules that would begin after
the check's two iterations are left out), no pretrained file (the check is about the pipeline,
not about numbers) and no checkpoint written; everything else (pipelines, resolutions, models,
heads, losses, optimizers, evaluators) is the config's own.
"""
import argparse
import gc
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from .config_lookup import CONFIGS
from .data.layout import FAMILIES

BATCH, ITERATIONS = 2, 2
# validated images: a landscape and a portrait one (of the generated COCO set: a crowd and an
# empty image)
VAL_IMAGES = 2
# the images each generated data set gets: as large as the real data's, a few of them (COCO: one
# of each kind of image, see cb_transfer.data.synthetic.COCO_VARIETY)
IMAGES = dict(imagenet=dict(num_train=BATCH * ITERATIONS, num_val=VAL_IMAGES, size=256),
              ade20k=dict(num_train=BATCH * ITERATIONS, num_val=VAL_IMAGES, size=600),
              coco=dict(num_train=8, num_val=VAL_IMAGES, size=640))


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


def write_data(root: Path) -> Dict[str, Path]:
    """The generated data sets in the real layouts under ``root``: {family: data root}."""
    from .data import make_ade20k, make_coco, make_imagenet
    from mmdet.datasets import CocoDataset
    return dict(
        imagenet=make_imagenet(root / 'data' / 'imagenet', **IMAGES['imagenet']),
        ade20k=make_ade20k(root / 'data' / 'ade' / 'ADEChallengeData2016', **IMAGES['ade20k']),
        # every COCO category in the annotations, as the evaluator maps the 80 labels to them
        coco=make_coco(root / 'data' / 'coco', classes=CocoDataset.METAINFO['classes'],
                       **IMAGES['coco']))


def data_options(cfg, root: Path, train_images: int, val_images: int) -> dict:
    """The config's data sets read ``root``, their first ``train_images`` and ``val_images``;
    a COCO evaluator reads the val data set's annotation file there."""
    from .data.layout import datasets_of
    options = {}
    for split, key, dataset in datasets_of(cfg):
        keys = [key]
        if split == 'val' and cfg.get('test_dataloader'):  # the configs test on val
            keys.append(key.replace('val_', 'test_', 1))
        for k in keys:
            options[f'{k}.data_root'] = str(root)
            options[f'{k}.indices'] = train_images if split == 'train' else val_images
        for evaluator in ('val_evaluator', 'test_evaluator'):
            if split == 'val' and isinstance(cfg.get(evaluator), dict) and \
                    cfg[evaluator].get('ann_file'):
                options[f'{evaluator}.ann_file'] = str(root / dataset['ann_file'])
    return options


def check_options(cfg) -> dict:
    """What the check changes in a config: batch 2, two iterations, no pretrained file, no
    checkpoint, no schedule beginning after the end."""
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


def family_of(config: Path) -> str:
    """The family (``imagenet``, ``ade20k``, ``coco``) of a full-size config, by its folder."""
    return config.parent.name


def check(config: Path, root: Path, train_images: int = BATCH * ITERATIONS,
          val_images: int = VAL_IMAGES) -> Outcome:
    """Inspect ``root`` for ``config``'s data sets; if nothing is wrong, train two iterations on
    its first ``train_images`` images and validate its first ``val_images``."""
    from .data.layout import inspect_root
    from .launch import load_config, train
    start = time.time()
    try:
        cfg = load_config(str(config), work_dir=f'work_dirs/{config.stem}')
        problems = inspect_root(family_of(config), root, cfg, images=max(train_images,
                                                                          val_images))
        if problems:
            return Outcome(config.name, False, time.time() - start,
                           'not run, the data are not what it reads:\n' +
                           '\n'.join(f'    - {p}' for p in problems))
        cfg.merge_from_dict(check_options(cfg))
        cfg.merge_from_dict(data_options(cfg, Path(root).resolve(), train_images, val_images))
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
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog='Rehearse on your data: tools/check_full.py --ade20k data/ade/ADEChallengeData2016 '
               '--coco data/coco --imagenet data/imagenet --sizes s (any of the three roots; '
               'only their families run).')
    parser.add_argument('--families', nargs='+', choices=FAMILIES, default=list(FAMILIES))
    for family, layout in (('imagenet', 'train/, val/, meta/{train,val}.txt'),
                           ('ade20k', 'ADEChallengeData2016: images/ and annotations/'),
                           ('coco', 'annotations/instances_{train,val}2017.json, train2017/, '
                                    'val2017/')):
        parser.add_argument(f'--{family}', metavar='ROOT', type=Path,
                            help=f'your {family} root ({layout}) instead of generated data')
    parser.add_argument('--train-images', type=int, default=BATCH * ITERATIONS,
                        help='training images each data set keeps (default %(default)s)')
    parser.add_argument('--val-images', type=int, default=VAL_IMAGES,
                        help='validation images each data set keeps (default %(default)s)')
    parser.add_argument('--sizes', help="DeiT sizes to check (e.g. 't' or 'tsb'; default all)")
    parser.add_argument('--configs', nargs='+', metavar='NAME.py',
                        help='config file names to check (default all)')
    parser.add_argument('--work-dir', default='work_dirs/check_full',
                        help='where the data and the runs go')
    args = parser.parse_args(argv)
    given = {f: getattr(args, f).resolve() for f in FAMILIES if getattr(args, f) is not None}
    families = [f for f in args.families if f in given] if given else args.families
    configs = full_size_configs(families, args.sizes, args.configs)
    work_dir = Path(args.work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    os.chdir(work_dir)  # the runs write work_dirs/... where they run
    roots = given or write_data(work_dir)
    import torch
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'
    data = ', '.join(f'{f} {roots[f]}' for f in families) if given else 'generated data'
    print(f'{len(configs)} full-size configs, {ITERATIONS} training iterations at batch {BATCH} '
          f'and {args.val_images} validation images each, on {device}; data: {data}; runs in '
          f'{work_dir}', flush=True)
    outcomes = []
    for index, config in enumerate(configs, 1):
        outcome = check(config, roots[family_of(config)], args.train_images, args.val_images)
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
