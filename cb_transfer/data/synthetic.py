"""Small, learnable data sets written in ImageNet, ADE20K and COCO layout, deterministic from a seed,
shaped like the real data sets.

They are read by mmpretrain's real ``ImageNet``, mmseg's real ``ADE20KDataset`` and mmdet's real
``CocoDataset``: no custom data set classes. One generated world: coloured shapes over a grey
background, each class its own colour (and, for COCO, its own shape), under per-image brightness
jitter and pixel noise. The classification set labels each scene with the class that covers most of
it, so what a model learns upstream (colours, shapes, their extent) is what the downstream tasks
ask for. A tiny model learns them in a few hundred iterations while an untrained one scores near
chance. Numbers measured on them show that the pipeline works, not how CB transfers: see the
README.

What the real sets contain and every pipeline must survive, each set has too (the properties are
asserted in tests/test_data.py; see docs/design.md, "Data that looks like the real data"):

- sizes: no side a multiple of 8, 14, 16 or 32 (ADE20K's 683x512, 500x364, ...), landscape and
  portrait in turn, of varying aspect ratio;
- files: grayscale and CMYK JPEGs among the colour ones (ImageNet has both, COCO grayscale),
  PNG data (ImageNet: one PNG under a ``.JPEG`` name, as the real train set has; COCO: ``.png``
  files);
- ADE20K: label maps with "other" (0) pixels, and most of the 150 classes absent;
- COCO: images without annotations, crowd annotations (uncompressed RLE, ``iscrowd=1``), non-crowd
  masks as compressed RLE beside polygons, tiny boxes and image-sized boxes.

Which image gets which property follows its index (``VARIETY``), so that a set of a few images
(``make check-full`` writes four) has them all.

A finished data set holds a ``.complete`` file with its parameters; one interrupted half-way, or
made with other parameters, is written again.
"""
import json
import shutil
from pathlib import Path
from typing import Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

# ADE20K's label files store 0 for "other" and 1..150 for its classes (reduce_zero_label maps them
# to ignore and 0..149). We draw labels 1..ADE_NUM_CLASSES: wall (the background), building, sky,
# floor, tree, ceiling; and "other" (0) regions.
ADE_NUM_CLASSES = 6
# The classification classes: the ADE classes but the background, as synthetic WordNet ids.
IMAGENET_CLASSES = ('building', 'sky', 'floor', 'tree', 'ceiling')
COCO_CLASSES = ('box', 'disc', 'triangle')
# Part of each data set's parameters: bump it when the drawing changes, so cached copies are redone.
GENERATOR_VERSION = 4
# BGR colours, far apart
PALETTE = np.array([[90, 90, 90], [40, 40, 200], [200, 160, 40], [60, 180, 60], [30, 200, 220],
                    [200, 60, 200], [220, 220, 220]], dtype=np.float32)
# No side of a generated image divides by these (patch sizes 8, 14, 16 and strides 32).
AVOIDED_DIVISORS = (8, 14)
# How an image is stored, by its index in its split: mostly colour JPEGs, one in VARIETY each a
# grayscale JPEG, a CMYK JPEG and PNG data.
FILE_KINDS = ('color', 'gray', 'color', 'cmyk', 'color', 'png', 'color')
# What a COCO image holds, by its index in its split (see _coco_image): the first two of a split
# are a crowd and an empty image, what a check validating two images must see.
COCO_VARIETY = ('crowd', 'empty', 'rle', 'tiny', 'image-sized', 'objects', 'objects', 'objects')


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


def _off_multiples(side: int) -> int:
    """The first side length from ``side`` on that no ``AVOIDED_DIVISORS`` divides."""
    while any(side % d == 0 for d in AVOIDED_DIVISORS):
        side += 1
    return side


def image_shape(rng: np.random.Generator, index: int, size: int) -> Tuple[int, int]:
    """(height, width) of image ``index``: the long side 0.9 to 1.3 times ``size``, an aspect
    ratio of 1.15 to 1.6, landscape for even indices and portrait for odd ones, no side a
    multiple of 8 or 14."""
    long = size * rng.uniform(0.9, 1.3)
    short = long / rng.uniform(1.15, 1.6)
    long, short = _off_multiples(round(long)), _off_multiples(round(short))
    return (short, long) if index % 2 == 0 else (long, short)


def write_image(path: Path, image: np.ndarray, kind: str) -> None:
    """Store a BGR image as ``kind``: a colour, grayscale or CMYK JPEG, or PNG data (whatever the
    file's name says, as ImageNet's one PNG named ``.JPEG``)."""
    if kind == 'color':
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    elif kind == 'gray':
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_BGR2GRAY),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
    elif kind == 'cmyk':
        Image.fromarray(image[..., ::-1]).convert('CMYK').save(path, 'JPEG', quality=95)
    elif kind == 'png':
        path.write_bytes(cv2.imencode('.png', image)[1].tobytes())
    else:
        raise ValueError(f'kind={kind!r} is not one of {", ".join(map(repr, FILE_KINDS))}')


def _file_kind(index: int, png: bool = True) -> str:
    kind = FILE_KINDS[index % len(FILE_KINDS)]
    return 'color' if kind == 'png' and not png else kind


def _paint(rng: np.random.Generator, canvas: np.ndarray, mask: np.ndarray, colour: np.ndarray):
    jitter = rng.uniform(-25, 25, size=3)
    canvas[mask] = colour + jitter


def _finish_image(rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
    canvas += rng.normal(0, 12, size=canvas.shape)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def _draw(rng: np.random.Generator, canvas: np.ndarray, label: np.ndarray, cls: int,
          half_range: Tuple[float, float], colour: np.ndarray = None) -> None:
    """A rectangle or an ellipse of ADE class ``cls`` with half-extents of ``half_range`` times
    the image's short side."""
    height, width = label.shape
    short = min(height, width)
    shape = np.zeros((height, width), np.uint8)
    centre = (rng.integers(width // 8, width - width // 8),
              rng.integers(height // 8, height - height // 8))
    half = np.maximum(1, (rng.uniform(*half_range, size=2) * short).astype(int))
    if rng.random() < 0.5:
        cv2.rectangle(shape, (int(centre[0] - half[0]), int(centre[1] - half[1])),
                      (int(centre[0] + half[0]), int(centre[1] + half[1])), 1, -1)
    else:
        cv2.ellipse(shape, tuple(map(int, centre)), tuple(map(int, half)), 0, 0, 360, 1, -1)
    region = shape.astype(bool)
    label[region] = cls
    _paint(rng, canvas, region, PALETTE[cls - 1] if colour is None else colour)


def _background(rng: np.random.Generator, shape: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    label = np.ones(shape, np.uint8)  # class 1 (wall) is the background
    canvas = np.empty((*shape, 3), np.float32)
    _paint(rng, canvas, label == 1, PALETTE[0])
    return canvas, label


def _ade_scene(rng: np.random.Generator, shape: Tuple[int, int],
               other: bool) -> Tuple[np.ndarray, np.ndarray]:
    """A scene of 2 to 4 rectangles and ellipses over the background class, and with ``other``
    an unlabelled region (0, ADE20K's "other") of a random colour: the image (BGR, uint8) and
    its ADE20K label map (0 other, 1 the background, 2..ADE_NUM_CLASSES)."""
    canvas, label = _background(rng, shape)
    for _ in range(rng.integers(2, 5)):
        _draw(rng, canvas, label, int(rng.integers(2, ADE_NUM_CLASSES + 1)), (1 / 8, 1 / 3))
    if other:
        _draw(rng, canvas, label, 0, (1 / 12, 1 / 5), colour=rng.uniform(0, 255, size=3))
    return _finish_image(rng, canvas), label


def _classification_scene(rng: np.random.Generator, shape: Tuple[int, int]) -> Tuple[np.ndarray, int]:
    """A scene of the same world with one large object, whose class is the label, and one or two
    smaller ones of other classes in front of it (so that a random crop mostly keeps the label).
    Returns the image and the label's index in IMAGENET_CLASSES."""
    canvas, label = _background(rng, shape)
    cls = int(rng.integers(2, ADE_NUM_CLASSES + 1))
    _draw(rng, canvas, label, cls, (1 / 4, 1 / 2))
    others = [c for c in range(2, ADE_NUM_CLASSES + 1) if c != cls]
    for _ in range(rng.integers(1, 3)):
        _draw(rng, canvas, label, int(rng.choice(others)), (1 / 10, 1 / 5))
    areas = np.bincount(label.ravel(), minlength=ADE_NUM_CLASSES + 1)[2:]
    return _finish_image(rng, canvas), int(areas.argmax())


def make_ade20k(root: str, num_train: int = 64, num_val: int = 16, size: int = 64,
                seed: int = 0) -> Path:
    """Write an ADE20K-layout data set (``images/{training,validation}/*.jpg``,
    ``annotations/{training,validation}/*.png``) of scenes of rectangles and ellipses over a
    background class, with "other" (0) regions in every second image, about ``size`` pixels on
    the long side (see :func:`image_shape`). Returns the root."""
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
            image, label = _ade_scene(rng, image_shape(rng, i, size), other=i % 2 == 0)
            name = f'ADE_{split}_{i:08d}'
            write_image(root / 'images' / split / f'{name}.jpg', image, _file_kind(i, png=False))
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
    class (of ``IMAGENET_CLASSES``) that covers the most pixels, about ``size`` pixels on the
    long side. Returns the root."""
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
            image, cls = _classification_scene(rng, image_shape(rng, i, size))
            if split == 'train':
                wnid = imagenet_wnid(cls)
                name = f'{wnid}/{wnid}_{i}.JPEG'
            else:
                name = f'ILSVRC2012_val_{i + 1:08d}.JPEG'
            (root / split / name).parent.mkdir(parents=True, exist_ok=True)
            write_image(root / split / name, image, _file_kind(i))
            lines.append(f'{name} {cls}\n')
        (root / 'meta' / f'{split}.txt').write_text(''.join(lines))
    return _finish(root, params)


def _coco_object(rng: np.random.Generator, cls: int, shape: Tuple[int, int],
                 radius_range: Tuple[float, float] = (0.12, 0.3)) -> np.ndarray:
    """The polygon (K, 2) of one object, radius ``radius_range`` times the short side: class 0
    a box, 1 a disc, 2 a triangle."""
    height, width = shape
    centre = rng.uniform((width * 0.2, height * 0.2), (width * 0.8, height * 0.8))
    radius = rng.uniform(*radius_range) * min(shape)
    if cls == 0:
        angles = np.deg2rad([45, 135, 225, 315])
    elif cls == 1:
        angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    else:
        angles = np.deg2rad([90, 210, 330])
    points = centre + radius * np.stack([np.cos(angles), -np.sin(angles)], axis=1)
    return np.clip(points, 0, (width - 1, height - 1))


def _rle(mask: np.ndarray, compressed: bool) -> dict:
    """COCO's run-length encoding of a binary mask: compressed (a string, as non-crowd RLE masks
    are stored) or uncompressed (a list of counts, column-major from a run of 0s, as COCO stores
    crowd regions)."""
    if compressed:
        from pycocotools import mask as mask_utils
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return dict(size=list(rle['size']), counts=rle['counts'].decode('ascii'))
    flat = mask.flatten(order='F').astype(np.uint8)
    bounds = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    return dict(size=list(mask.shape), counts=[0] + counts if flat[0] else counts)


def _box(mask: np.ndarray) -> list:
    """The [x, y, w, h] box of a mask's pixels, as COCO gives it."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
            float(ys.max() - ys.min() + 1)]


def _coco_image(rng: np.random.Generator, shape: Tuple[int, int], variety: str,
                num_classes: int) -> Tuple[np.ndarray, list]:
    """One COCO image of ``variety`` (see ``COCO_VARIETY``) and its annotations (without ids):
    1 to 3 objects as polygons; 'tiny' adds an object a few pixels wide, 'crowd' a crowd region
    of several small objects of one class (uncompressed RLE, ``iscrowd=1``), 'rle' stores one
    object's mask as compressed RLE; 'image-sized' is one box filling the image, 'empty' has
    no object."""
    height, width = shape
    canvas = np.empty((height, width, 3), np.float32)
    _paint(rng, canvas, np.ones(shape, bool), PALETTE[0])
    annotations = []

    def paint(mask, cls):
        _paint(rng, canvas, mask, PALETTE[1 + cls % (len(PALETTE) - 1)])

    def polygon_annotation(polygon, cls):
        mask = np.zeros(shape, np.uint8)
        cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
        paint(mask.astype(bool), cls)
        x0, y0 = polygon.min(0)
        x1, y1 = polygon.max(0)
        annotations.append(dict(
            category_id=cls + 1, iscrowd=0, segmentation=[np.round(polygon, 2).flatten().tolist()],
            bbox=[round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2),
                  round(float(y1 - y0), 2)], area=float(mask.sum()), mask=mask))

    if variety == 'image-sized':
        corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
        paint(np.ones(shape, bool), 0)
        annotations.append(dict(category_id=1, iscrowd=0,
                                segmentation=[corners.flatten().tolist()],
                                bbox=[0.0, 0.0, float(width), float(height)],
                                area=float(width * height)))
    elif variety != 'empty':
        for _ in range(rng.integers(1, 4)):
            cls = int(rng.integers(num_classes))
            polygon_annotation(_coco_object(rng, cls, shape), cls)
        if variety == 'tiny':
            cls = int(rng.integers(num_classes))
            polygon_annotation(_coco_object(rng, cls, shape, (2.5 / min(shape), 4 / min(shape))),
                               cls)
        if variety == 'rle':  # a mask's RLE and box, as a converted data set stores them
            annotations[-1].update(segmentation=_rle(annotations[-1]['mask'], compressed=True),
                                   bbox=_box(annotations[-1]['mask']))
        if variety == 'crowd':
            cls = int(rng.integers(num_classes))
            crowd = np.zeros(shape, np.uint8)
            for _ in range(5):
                polygon = _coco_object(rng, cls, shape, (0.04, 0.07))
                cv2.fillPoly(crowd, [np.round(polygon).astype(np.int32)], 1)
            paint(crowd.astype(bool), cls)
            annotations.append(dict(category_id=cls + 1, iscrowd=1,
                                    segmentation=_rle(crowd, compressed=False),
                                    bbox=_box(crowd), area=float(crowd.sum())))
    for annotation in annotations:
        annotation.pop('mask', None)
    return _finish_image(rng, canvas), annotations


def make_coco(root: str, num_train: int = 64, num_val: int = 16, size: int = 128,
              seed: int = 0, classes: Sequence[str] = COCO_CLASSES) -> Path:
    """Write a COCO-layout data set (``annotations/instances_{train,val}2017.json``,
    ``{train,val}2017/*.jpg`` and ``*.png``) of images about ``size`` pixels on the long side
    with 1 to 3 objects each, and the variety of ``COCO_VARIETY``. Returns the root."""
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
            shape = image_shape(rng, i, size)
            image, objects = _coco_image(rng, shape, COCO_VARIETY[i % len(COCO_VARIETY)],
                                         len(classes))
            for annotation in objects:
                annotations.append(dict(id=ann_id, image_id=image_id, **annotation))
                ann_id += 1
            kind = _file_kind(i)
            file_name = f'{image_id:012d}.{"png" if kind == "png" else "jpg"}'
            write_image(root / split / file_name, image, kind)
            images.append(dict(id=image_id, file_name=file_name, height=shape[0],
                               width=shape[1]))
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
