"""Whether a data root holds what a config's data sets read: the layout, the annotation files and
the class labels, each problem named with what to do. The rehearsal (``tools/check_full.py
--ade20k ROOT ...``) asks this before it builds a model, so that a malformed root fails in
seconds with a sentence, not hours into a job with a traceback.

Every path comes from the config itself (each data set's ``ann_file`` and ``data_prefix``), so a
config that reads another layout is checked against its own; what each family adds:

- ImageNet (mmpretrain ``ImageNet``): the annotation lists' ``<path> <label>`` lines, their labels
  within the classifier's classes, the first images present;
- ADE20K (mmseg ``ADE20KDataset``): an 8-bit, single-channel label map beside each of the first
  images, of the image's size, with labels 0 ("other") to the decode head's classes;
- COCO (mmdet ``CocoDataset``): the annotation files parse, there is a category for each of the
  config's classes, by name, and the first images they list are present.
"""
import json
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Tuple

import cv2

FAMILIES = ('imagenet', 'ade20k', 'coco')
SPLITS = ('train', 'val')


def datasets_of(cfg) -> Iterator[Tuple[str, str, dict]]:
    """(split, key, dataset config) of the train and val loaders, through dataset wrappers
    (``RepeatDataset`` and the like): ``key`` is where the data set sits in the config, e.g.
    ``'train_dataloader.dataset'``."""
    for split in SPLITS:
        key = f'{split}_dataloader.dataset'
        dataset = (cfg.get(f'{split}_dataloader') or {}).get('dataset')
        while isinstance(dataset, dict) and isinstance(dataset.get('dataset'), dict):
            key, dataset = key + '.dataset', dataset['dataset']
        if isinstance(dataset, dict):
            yield split, key, dataset


def _prefixes(dataset: dict) -> Dict[str, str]:
    prefix = dataset.get('data_prefix') or {}
    return {'data_prefix': prefix} if isinstance(prefix, str) else {
        f'data_prefix.{name}': value for name, value in prefix.items()}


def _layout(root: Path, split: str, key: str, dataset: dict) -> List[str]:
    problems = []
    ann_file = dataset.get('ann_file') or ''
    if ann_file and not (root / ann_file).is_file():
        problems.append(f"'{root / ann_file}' is missing: the {split} annotation file "
                        f'({key}.ann_file = {ann_file!r})')
    for name, folder in _prefixes(dataset).items():
        if folder and not (root / folder).is_dir():
            problems.append(f"'{root / folder}' is not a folder: the {split} images or labels "
                            f'({key}.{name} = {folder!r})')
    return problems


def _classes(cfg, dataset: dict) -> Tuple[str, ...]:
    """The classes a data set config names (its ``metainfo``) or its class's defaults."""
    classes = (dataset.get('metainfo') or {}).get('classes')
    if classes:
        return tuple(classes)
    from mmengine.registry import DATASETS
    name = dataset['type']
    scope = dataset.get('_scope_') or cfg.get('default_scope')
    return tuple(DATASETS.get(name if '.' in name or not scope else f'{scope}.{name}')
                 .METAINFO['classes'])


def _imagenet_paths(root: Path, dataset: dict) -> dict:
    """An mmpretrain ``ImageNet`` config with the paths its ``split`` implies: the images under
    the split's folder, the labels in ``meta/<split>.txt`` where that file exists."""
    split = dataset.get('split')
    if not split:
        return dataset
    ann_file = dataset.get('ann_file') or ''
    if not ann_file and (root / 'meta' / f'{split}.txt').is_file():
        ann_file = f'meta/{split}.txt'
    return {**dataset, 'data_prefix': dataset.get('data_prefix') or split, 'ann_file': ann_file}


def _imagenet(root: Path, cfg, split: str, key: str, dataset: dict, images: int) -> List[str]:
    num_classes = cfg.model.head.num_classes
    folder = root / (dataset.get('data_prefix') or '')
    ann_file = dataset.get('ann_file') or ''
    if not ann_file:  # mmpretrain reads the class folders
        found = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if len(found) != num_classes:
            return [f"'{folder}' has {len(found)} class folders, the classifier "
                    f'{num_classes} classes (model.head.num_classes), and there is no '
                    f"'{root / 'meta' / (split + '.txt')}': mmpretrain's ImageNet reads the "
                    "labels from '<path> <label>' lines there (its docs, \"Prepare ImageNet\", "
                    'say how to make them) or from one folder per class']
        return []
    problems = []
    with open(root / ann_file) as lines:
        for number, line in enumerate(lines, 1):
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or not parts[1].lstrip('-').isdigit():
                problems.append(f"'{root / ann_file}' line {number}: {line.strip()!r} is not "
                                "'<path> <label>' (mmpretrain's ImageNet annotation lists, as "
                                'its docs, "Prepare ImageNet", describe them)')
            elif not 0 <= int(parts[1]) < num_classes:
                problems.append(f"'{root / ann_file}' line {number}: label {parts[1]} is not one "
                                f'of the classifier\'s 0..{num_classes - 1} '
                                '(model.head.num_classes)')
            elif number <= images and not (folder / parts[0]).is_file():
                problems.append(f"'{folder / parts[0]}' (line {number} of '{root / ann_file}') "
                                f'is missing: {key}.data_prefix is {str(folder.name)!r}')
            if problems:
                break
    return problems


def _ade20k(root: Path, cfg, split: str, key: str, dataset: dict, images: int) -> List[str]:
    prefix = dataset.get('data_prefix') or {}
    image_dir, label_dir = root / prefix.get('img_path', ''), root / prefix.get('seg_map_path', '')
    img_suffix, seg_suffix = dataset.get('img_suffix', '.jpg'), dataset.get('seg_map_suffix',
                                                                           '.png')
    files = sorted(image_dir.glob(f'*{img_suffix}'))
    if not files:
        hint = (': this looks like the full ADE20K release; the configs read the 150-class '
                'scene-parsing release, ADEChallengeData2016'
                if (root / 'index_ade20k.pkl').exists() or (image_dir / 'ADE').is_dir() else '')
        return [f"'{image_dir}' holds no {img_suffix} images{hint}"]
    num_classes = cfg.model.decode_head.num_classes
    for image_file in files[:images]:
        label_file = label_dir / (image_file.name[:-len(img_suffix)] + seg_suffix)
        label = cv2.imread(str(label_file), cv2.IMREAD_UNCHANGED)
        if label is None:
            return [f"'{label_file}' is missing or unreadable: the label map of '{image_file}'"]
        if label.ndim != 2 or label.dtype != 'uint8':
            return [f"'{label_file}' is a {label.dtype} image of shape {label.shape}: ADE20K's "
                    'label maps are 8-bit single-channel class indices (0 other, 1..150), not '
                    'colour renderings']
        if label.max() > num_classes:
            return [f"'{label_file}' holds label {label.max()}: ADE20K's label maps hold 0 "
                    f'(other) to {num_classes} (model.decode_head.num_classes)']
        image = cv2.imread(str(image_file), cv2.IMREAD_UNCHANGED)
        if image is None:
            return [f"'{image_file}' is not a readable image"]
        if image.shape[:2] != label.shape:
            return [f"'{label_file}' is {label.shape[1]}x{label.shape[0]}, its image "
                    f"'{image_file}' {image.shape[1]}x{image.shape[0]}: a label map has its "
                    "image's size"]
    return []


def _coco(root: Path, cfg, split: str, key: str, dataset: dict, images: int) -> List[str]:
    ann_file = root / dataset['ann_file']
    try:
        content = json.loads(ann_file.read_text())
    except ValueError as err:
        return [f"'{ann_file}' is not JSON ({err})"]
    missing = [k for k in ('images', 'annotations', 'categories') if k not in content]
    if missing:
        return [f"'{ann_file}' has no {', '.join(missing)}: a COCO instances file has images, "
                'annotations and categories']
    classes = _classes(cfg, dataset)
    names = [c.get('name') for c in content['categories']]
    if not set(names) & set(classes):
        return [f"none of the categories of '{ann_file}' ({', '.join(map(str, names[:6]))}"
                f"{', ...' if len(names) > 6 else ''}) is one of the config's classes "
                f"({', '.join(classes[:6])}, ...): the data set reads categories by name; "
                "rename them to COCO's (e.g. VOC's 'sofa' is COCO's 'couch')"]
    absent = [c for c in classes if c not in names]
    if absent:
        return [f"'{ann_file}' has no category for {len(absent)} of the config's "
                f"{len(classes)} classes ({', '.join(absent[:6])}{', ...' if len(absent) > 6 else ''}"
                "): mmdet's CocoMetric gives each class the category of its name and fails on "
                'a prediction of a class without one; add those categories (without '
                "annotations), or give the config your classes (the data sets' metainfo and "
                'the heads\' num_classes)']
    folder = root / ((dataset.get('data_prefix') or {}).get('img') or '')
    for image in content['images'][:images]:
        if not (folder / image['file_name']).is_file():
            return [f"'{folder / image['file_name']}' is missing: image {image.get('id')} of "
                    f"'{ann_file}'"]
    return []


CHECKS: Dict[str, Callable] = dict(imagenet=_imagenet, ade20k=_ade20k, coco=_coco)


def inspect_root(family: str, root: str, cfg, images: int = 4) -> List[str]:
    """What is missing or malformed in ``root`` for ``cfg``'s train and val data sets, each
    problem a sentence with the path and the config key it comes from; empty if nothing is.

    Args:
        family: One of ``FAMILIES``.
        root: The data root given for the family (the data sets' ``data_root`` becomes it).
        cfg: The mmengine config whose data sets read it.
        images: How many of each split's first images (and label maps) to open.
    """
    root = Path(root)
    if not root.is_dir():
        return [f"the {family} root '{root}' is not a folder"]
    problems = []
    for split, key, dataset in datasets_of(cfg):
        if family == 'imagenet':
            dataset = _imagenet_paths(root, dataset)
        found = _layout(root, split, key, dataset)
        problems += found or CHECKS[family](root, cfg, split, key, dataset, images)
    return problems
