"""Small, learnable data sets written in ImageNet, ADE20K and COCO layout, deterministic from a seed.

They are read by mmpretrain's real ``ImageNet``, mmseg's real ``ADE20KDataset`` and mmdet's real
``CocoDataset``: no custom data set classes. One generated world: coloured shapes over a grey
background, each class its own colour (and, for COCO, its own shape), under per-image brightness
jitter and pixel noise. The classification set labels each scene with the class that covers most of
it, so what a model learns upstream (colours, shapes, their extent) is what the downstream tasks
ask for. A tiny model learns them in a few hundred iterations while an untrained one scores near
chance. Numbers measured on them show that the pipeline works, not how CB transfers: see the
README.

A finished data set holds a ``.complete`` file with its parameters; one interrupted half-way, or
made with other parameters, is written again.
"""
import json
import shutil
from pathlib import Path
from typing import Sequence, Tuple

import cv2
import numpy as np

# ADE20K's label files store 0 for "other" and 1..150 for its classes (reduce_zero_label maps them
# to ignore and 0..149). We draw labels 1..ADE_NUM_CLASSES: wall (the background), building, sky,
# floor, tree, ceiling.
ADE_NUM_CLASSES = 6
# The classification classes: the ADE classes but the background, as synthetic WordNet ids.
IMAGENET_CLASSES = ('building', 'sky', 'floor', 'tree', 'ceiling')
COCO_CLASSES = ('box', 'disc', 'triangle')
# BGR colours, far apart
# Part of each data set's parameters: bump it when the drawing changes, so cached copies are redone.
GENERATOR_VERSION = 3
PALETTE = np.array([[90, 90, 90], [40, 40, 200], [200, 160, 40], [60, 180, 60], [30, 200, 220],
                    [200, 60, 200], [220, 220, 220]], dtype=np.float32)


def _complete(root: Path, params: dict) -> bool:
    marker = root / '.complete'
    return marker.is_file() and json.loads(marker.read_text()) == params


def _finish(root: Path, params: dict) -> Path:
    (root / '.complete').write_text(json.dumps(params))
    return root


def _already_made(root: Path, params: dict) -> bool:
    """Whether ``root`` holds a complete set made with ``params``; if not, it is cleared for a
    new one (a set interrupted half-way, or made with other parameters, is written again)."""
    if _complete(root, params):
        return True
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    return False


def _paint(rng: np.random.Generator, canvas: np.ndarray, mask: np.ndarray, colour: np.ndarray):
    jitter = rng.uniform(-25, 25, size=3)
    canvas[mask] = colour + jitter


def _finish_image(rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
    canvas += rng.normal(0, 12, size=canvas.shape)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def _draw(rng: np.random.Generator, canvas: np.ndarray, label: np.ndarray, cls: int,
          half_range: Tuple[int, int]) -> None:
    """A rectangle or an ellipse of ADE class ``cls`` with half-extents in ``half_range``."""
    size = label.shape[0]
    shape = np.zeros((size, size), np.uint8)
    centre = rng.integers(size // 8, size - size // 8, size=2)
    half = rng.integers(*half_range, size=2)
    if rng.random() < 0.5:
        cv2.rectangle(shape, tuple(map(int, centre - half)), tuple(map(int, centre + half)), 1, -1)
    else:
        cv2.ellipse(shape, tuple(map(int, centre)), tuple(map(int, half)), 0, 0, 360, 1, -1)
    region = shape.astype(bool)
    label[region] = cls
    _paint(rng, canvas, region, PALETTE[cls - 1])


def _background(rng: np.random.Generator, size: int) -> Tuple[np.ndarray, np.ndarray]:
    label = np.ones((size, size), np.uint8)  # class 1 (wall) is the background
    canvas = np.empty((size, size, 3), np.float32)
    _paint(rng, canvas, label == 1, PALETTE[0])
    return canvas, label


def _ade_scene(rng: np.random.Generator, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` scene of 2 to 4 rectangles and ellipses over the background class:
    the image (BGR, uint8) and its ADE20K label map (1 the background, 2..ADE_NUM_CLASSES)."""
    canvas, label = _background(rng, size)
    for _ in range(rng.integers(2, 5)):
        _draw(rng, canvas, label, int(rng.integers(2, ADE_NUM_CLASSES + 1)),
              (size // 8, size // 3))
    return _finish_image(rng, canvas), label


def _classification_scene(rng: np.random.Generator, size: int) -> Tuple[np.ndarray, int]:
    """A scene of the same world with one large object, whose class is the label, and one or two
    smaller ones of other classes in front of it (so that a random crop mostly keeps the label).
    Returns the image and the label's index in IMAGENET_CLASSES."""
    canvas, label = _background(rng, size)
    cls = int(rng.integers(2, ADE_NUM_CLASSES + 1))
    _draw(rng, canvas, label, cls, (size // 4, size // 2))
    others = [c for c in range(2, ADE_NUM_CLASSES + 1) if c != cls]
    for _ in range(rng.integers(1, 3)):
        _draw(rng, canvas, label, int(rng.choice(others)), (size // 10, size // 5))
    areas = np.bincount(label.ravel(), minlength=ADE_NUM_CLASSES + 1)[2:]
    return _finish_image(rng, canvas), int(areas.argmax())


def make_ade20k(root: str, num_train: int = 64, num_val: int = 16, size: int = 64,
                seed: int = 0) -> Path:
    """Write an ADE20K-layout data set (``images/{training,validation}/*.jpg``,
    ``annotations/{training,validation}/*.png``) of ``size``x``size`` scenes of rectangles and
    ellipses over a background class. Returns the root."""
    root = Path(root)
    params = dict(layout='ade20k', version=GENERATOR_VERSION, num_train=num_train,
                  num_val=num_val, size=size, seed=seed)
    if _already_made(root, params):
        return root
    rng = np.random.default_rng(seed)
    for split, count in (('training', num_train), ('validation', num_val)):
        (root / 'images' / split).mkdir(parents=True)
        (root / 'annotations' / split).mkdir(parents=True)
        for i in range(count):
            image, label = _ade_scene(rng, size)
            name = f'ADE_{split}_{i:08d}'
            cv2.imwrite(str(root / 'images' / split / f'{name}.jpg'), image,
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(str(root / 'annotations' / split / f'{name}.png'), label)
    return _finish(root, params)


def imagenet_wnid(index: int) -> str:
    """The synthetic WordNet id (folder name) of classification class ``index``."""
    return f'n{index + 1:08d}'


def make_imagenet(root: str, num_train: int = 512, num_val: int = 128, size: int = 64,
                  seed: int = 0) -> Path:
    """Write an ImageNet-layout classification set: ``train/<wnid>/<wnid>_<i>.JPEG``,
    ``val/ILSVRC2012_val_<i>.JPEG`` and ``meta/{train,val}.txt`` (``<path> <label>`` lines), as
    mmpretrain's ``ImageNet`` reads it. Each image is a scene of the ADE world labelled with the
    class (of ``IMAGENET_CLASSES``) that covers the most pixels. Returns the root."""
    root = Path(root)
    params = dict(layout='imagenet', version=GENERATOR_VERSION, num_train=num_train,
                  num_val=num_val, size=size, seed=seed)
    if _already_made(root, params):
        return root
    (root / 'meta').mkdir()
    rng = np.random.default_rng(seed)
    for split, count in (('train', num_train), ('val', num_val)):
        lines = []
        for i in range(count):
            image, cls = _classification_scene(rng, size)
            if split == 'train':
                wnid = imagenet_wnid(cls)
                name = f'{wnid}/{wnid}_{i}.JPEG'
            else:
                name = f'ILSVRC2012_val_{i + 1:08d}.JPEG'
            (root / split / name).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / split / name), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            lines.append(f'{name} {cls}\n')
        (root / 'meta' / f'{split}.txt').write_text(''.join(lines))
    return _finish(root, params)


def _coco_object(rng: np.random.Generator, cls: int, size: int) -> np.ndarray:
    """The polygon (K, 2) of one object: class 0 a box, 1 a disc, 2 a triangle."""
    centre = rng.uniform(size * 0.2, size * 0.8, size=2)
    radius = rng.uniform(size * 0.12, size * 0.3)
    if cls == 0:
        angles = np.deg2rad([45, 135, 225, 315])
    elif cls == 1:
        angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    else:
        angles = np.deg2rad([90, 210, 330])
    points = centre + radius * np.stack([np.cos(angles), -np.sin(angles)], axis=1)
    return np.clip(points, 0, size - 1)


def make_coco(root: str, num_train: int = 64, num_val: int = 16, size: int = 128,
              seed: int = 0, classes: Sequence[str] = COCO_CLASSES) -> Path:
    """Write a COCO-layout data set (``annotations/instances_{train,val}2017.json`` with polygon
    masks, ``{train,val}2017/*.jpg``) of 1 to 3 objects per image. Returns the root."""
    root = Path(root)
    params = dict(layout='coco', version=GENERATOR_VERSION, num_train=num_train,
                  num_val=num_val, size=size, seed=seed, classes=list(classes))
    if _already_made(root, params):
        return root
    (root / 'annotations').mkdir()
    rng = np.random.default_rng(seed)
    categories = [dict(id=i + 1, name=name, supercategory='shape')
                  for i, name in enumerate(classes)]
    ann_id = 1
    for split, count in (('train2017', num_train), ('val2017', num_val)):
        (root / split).mkdir()
        images, annotations = [], []
        for i in range(count):
            image_id = i + 1
            canvas = np.empty((size, size, 3), np.float32)
            _paint(rng, canvas, np.ones((size, size), bool), PALETTE[0])
            for _ in range(rng.integers(1, 4)):
                cls = int(rng.integers(len(classes)))
                polygon = _coco_object(rng, cls, size)
                mask = np.zeros((size, size), np.uint8)
                cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
                _paint(rng, canvas, mask.astype(bool), PALETTE[1 + cls % (len(PALETTE) - 1)])
                x0, y0 = polygon.min(0)
                x1, y1 = polygon.max(0)
                annotations.append(dict(
                    id=ann_id, image_id=image_id, category_id=cls + 1, iscrowd=0,
                    segmentation=[np.round(polygon, 2).flatten().tolist()],
                    bbox=[round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2),
                          round(float(y1 - y0), 2)],
                    area=float(mask.sum())))
                ann_id += 1
            file_name = f'{image_id:012d}.jpg'
            cv2.imwrite(str(root / split / file_name), _finish_image(rng, canvas),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            images.append(dict(id=image_id, file_name=file_name, height=size, width=size))
        (root / 'annotations' / f'instances_{split}.json').write_text(json.dumps(
            dict(images=images, annotations=annotations, categories=categories)))
    return _finish(root, params)


def make_smoke_data(data_root: str = 'data/smoke', seed: int = 0) -> Tuple[Path, Path, Path]:
    """The three data sets where the smoke configs expect them
    (``data/smoke/{imagenet,ade20k,coco}``).

    The COCO set is larger: detection from scratch needs more images than segmentation to
    learn rather than memorise in a few hundred iterations.
    """
    root = Path(data_root)
    return (make_imagenet(root / 'imagenet', seed=seed),
            make_ade20k(root / 'ade20k', seed=seed),
            make_coco(root / 'coco', num_train=512, num_val=32, seed=seed))
