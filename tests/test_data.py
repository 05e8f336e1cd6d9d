"""The generated data sets vary as the real ones do (each property asserted, so a generator that
goes back to square multiples of 16 fails here), are read by the data set classes of mmpretrain,
mmseg and mmdet, and come back bit-identical for one seed; and the data-root inspection of the
rehearsal names what is missing or malformed."""
import json
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image
from pycocotools import mask as mask_utils

from cb_transfer.data import make_ade20k, make_coco, make_imagenet
from cb_transfer.data.layout import inspect_root
from cb_transfer.data.synthetic import COCO_VARIETY

DIVISORS = (8, 14, 16, 32)


@pytest.fixture(scope='module')
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp('generated')
    return dict(imagenet=make_imagenet(root / 'imagenet', num_train=16, num_val=8),
                ade20k=make_ade20k(root / 'ade', num_train=16, num_val=8),
                coco=make_coco(root / 'coco', num_train=16, num_val=8))


def image_files(root: Path):
    return sorted(p for p in root.rglob('*') if p.suffix.lower() in ('.jpeg', '.jpg', '.png')
                  and 'annotations' not in p.parts)


def assert_shaped_like_real_images(files):
    shapes = [cv2.imread(str(f), cv2.IMREAD_UNCHANGED).shape[:2] for f in files]
    for height, width in shapes:
        assert all(height % d and width % d for d in DIVISORS), (height, width)
    assert any(h > w for h, w in shapes) and any(h < w for h, w in shapes)  # portrait, landscape
    assert len({round(max(s) / min(s), 2) for s in shapes}) > len(shapes) // 2  # aspect ratios vary


def file_kinds(files) -> Counter:
    kinds = Counter()
    for f in files:
        with Image.open(f) as image:
            kinds[(image.format, image.mode)] += 1
    return kinds


def test_imagenet_has_odd_sizes_grayscale_cmyk_and_a_png_named_jpeg(sets):
    files = image_files(sets['imagenet'])
    assert_shaped_like_real_images(files)
    kinds = file_kinds(files)
    assert {('JPEG', 'RGB'), ('JPEG', 'L'), ('JPEG', 'CMYK'), ('PNG', 'RGB')} <= set(kinds)
    assert all(f.suffix == '.JPEG' for f in files)  # PNG data under a .JPEG name, as in the real set


def test_ade20k_has_odd_sizes_grayscale_other_pixels_and_absent_classes(sets):
    root = sets['ade20k']
    files = image_files(root)
    assert_shaped_like_real_images(files)
    assert {('JPEG', 'RGB'), ('JPEG', 'L'), ('JPEG', 'CMYK')} <= set(file_kinds(files))
    seen = set()
    for image in files:
        label = cv2.imread(str(image).replace('images', 'annotations').replace('.jpg', '.png'),
                           cv2.IMREAD_UNCHANGED)
        assert label.dtype == np.uint8 and label.ndim == 2  # class indices, as ADE20K's
        assert label.shape == cv2.imread(str(image), cv2.IMREAD_UNCHANGED).shape[:2]
        seen |= set(np.unique(label).tolist())
    assert 0 in seen  # "other", ignored after reduce_zero_label
    assert seen < set(range(151)) and len(seen) < 150  # most of the 150 classes never appear


def test_coco_has_empty_crowd_rle_tiny_and_image_sized_annotations(sets):
    root = sets['coco']
    files = image_files(root)
    assert_shaped_like_real_images(files)
    assert {('JPEG', 'RGB'), ('JPEG', 'L'), ('JPEG', 'CMYK'), ('PNG', 'RGB')} <= \
        set(file_kinds(files))
    content = json.loads((root / 'annotations' / 'instances_train2017.json').read_text())
    images = {i['id']: i for i in content['images']}
    by_image = Counter(a['image_id'] for a in content['annotations'])
    assert any(by_image[i] == 0 for i in images)  # images without annotations
    crowds = [a for a in content['annotations'] if a['iscrowd']]
    assert crowds and all(isinstance(a['segmentation']['counts'], list) for a in crowds)
    compressed = [a for a in content['annotations'] if not a['iscrowd']
                  and isinstance(a['segmentation'], dict)]
    assert compressed and all(isinstance(a['segmentation']['counts'], str) for a in compressed)
    assert any(isinstance(a['segmentation'], list) for a in content['annotations'])  # polygons
    for a in crowds + compressed:  # the masks decode, to their boxes, at their image's size
        image = images[a['image_id']]
        rle = a['segmentation'] if a in compressed else mask_utils.frPyObjects(
            a['segmentation'], image['height'], image['width'])  # as mmdet's loading does
        mask = mask_utils.decode(rle)
        assert mask.sum() == a['area'] and mask.shape == (image['height'], image['width'])
        assert mask_utils.toBbox(rle).tolist() == a['bbox']
    sides = [max(a['bbox'][2:]) for a in content['annotations']]
    assert min(sides) <= 8  # tiny boxes
    assert any(a['bbox'] == [0, 0, images[a['image_id']]['width'],
                             images[a['image_id']]['height']] for a in content['annotations'])
    assert [COCO_VARIETY[i % len(COCO_VARIETY)] for i in range(2)] == ['crowd', 'empty']


def test_the_data_set_classes_read_every_image_and_label(sets):
    """What the pipelines' first steps do with each file: LoadImageFromFile gives 3 channels
    whatever the file is (grayscale, CMYK, PNG), the annotations load."""
    from mmdet.datasets import CocoDataset
    from mmpretrain.datasets import ImageNet
    from mmseg.datasets import ADE20KDataset
    load = [dict(type='LoadImageFromFile')]
    datasets = [
        ImageNet(data_root=str(sets['imagenet']), split='val', pipeline=load,
                 classes=[f'c{i}' for i in range(5)]),
        ADE20KDataset(data_root=str(sets['ade20k']), pipeline=load + [
            dict(type='mmseg.LoadAnnotations', reduce_zero_label=True)],
            data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')),
        CocoDataset(data_root=str(sets['coco']), ann_file='annotations/instances_train2017.json',
                    data_prefix=dict(img='train2017/'), metainfo=dict(
                        classes=('box', 'disc', 'triangle')),
                    pipeline=load + [dict(type='mmdet.LoadAnnotations', with_bbox=True,
                                          with_mask=True)])]
    for dataset in datasets:
        for i in range(len(dataset)):
            item = dataset[i]
            assert item['img'].ndim == 3 and item['img'].shape[2] == 3
            if 'gt_masks' in item:
                assert item['gt_masks'].masks.shape[1:] == item['img'].shape[:2]
                assert len(item['gt_masks']) == len(item['gt_bboxes'])


def test_one_seed_gives_identical_files(sets, tmp_path):
    again = make_coco(tmp_path / 'coco', num_train=16, num_val=8)
    for a, b in zip(image_files(sets['coco']), image_files(again)):
        assert a.read_bytes() == b.read_bytes()
    assert (sets['coco'] / 'annotations' / 'instances_train2017.json').read_bytes() == \
        (again / 'annotations' / 'instances_train2017.json').read_bytes()


# ---- the rehearsal's inspection of a data root ------------------------------------------------

CONFIGS = Path(__file__).resolve().parents[1] / 'configs'


@pytest.fixture(scope='module')
def full_configs():
    from cb_transfer.launch import load_config
    return dict(
        imagenet=load_config(str(CONFIGS / 'imagenet' / 'deit-t16_8xb128-300e_in1k-224.py')),
        ade20k=load_config(str(CONFIGS / 'ade20k' / 'upernet_deit-t16_8xb2-160k_ade20k-512x512.py')),
        coco=load_config(str(CONFIGS / 'coco' / 'mask-rcnn_deit-t16_fpn_8xb2-1x_coco.py')))


@pytest.fixture(scope='module')
def real_layouts(tmp_path_factory):
    """Generated sets in the layouts the full-size configs read, COCO with COCO's classes."""
    from mmdet.datasets import CocoDataset
    root = tmp_path_factory.mktemp('layouts')
    return dict(imagenet=make_imagenet(root / 'imagenet', num_train=4, num_val=2),
                ade20k=make_ade20k(root / 'ade', num_train=4, num_val=2),
                coco=make_coco(root / 'coco', num_train=4, num_val=2,
                               classes=CocoDataset.METAINFO['classes']))


def broken_copy(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / source.name
    shutil.copytree(source, target)
    return target


def test_well_formed_roots_have_no_problems(real_layouts, full_configs):
    for family, root in real_layouts.items():
        assert inspect_root(family, root, full_configs[family]) == [], family


def test_a_missing_annotation_file_is_named_with_its_config_key(real_layouts, full_configs,
                                                                 tmp_path):
    root = broken_copy(real_layouts['coco'], tmp_path)
    (root / 'annotations' / 'instances_val2017.json').unlink()
    (problem,) = inspect_root('coco', root, full_configs['coco'])
    assert 'instances_val2017.json' in problem and 'is missing' in problem
    assert "val_dataloader.dataset.ann_file = 'annotations/instances_val2017.json'" in problem


def test_categories_that_are_not_the_configs_classes_are_named_with_what_to_do(
        real_layouts, full_configs, tmp_path):
    root = broken_copy(real_layouts['coco'], tmp_path)
    for split in ('train2017', 'val2017'):
        path = root / 'annotations' / f'instances_{split}.json'
        content = json.loads(path.read_text())
        content['categories'] = [dict(id=1, name='sofa'), dict(id=2, name='aeroplane')]
        path.write_text(json.dumps(content))
    problems = inspect_root('coco', root, full_configs['coco'])
    assert len(problems) == 2 and 'sofa, aeroplane' in problems[0]
    assert "rename them to COCO's" in problems[0] and 'person' in problems[0]


def test_a_coco_file_without_some_of_the_configs_classes_is_refused_naming_them(
        real_layouts, full_configs, tmp_path):
    """mmdet's CocoMetric fails (IndexError in results2json) on a class without a category."""
    root = broken_copy(real_layouts['coco'], tmp_path)
    path = root / 'annotations' / 'instances_val2017.json'
    content = json.loads(path.read_text())
    content['categories'] = [c for c in content['categories'] if c['name'] not in
                             ('toaster', 'hair drier')]
    path.write_text(json.dumps(content))
    (problem,) = inspect_root('coco', root, full_configs['coco'])
    assert 'no category for 2 of the config\'s 80 classes (toaster, hair drier)' in problem
    assert 'add those categories' in problem


def test_colour_label_maps_and_labels_beyond_the_classes_are_refused(real_layouts, full_configs,
                                                                    tmp_path):
    root = broken_copy(real_layouts['ade20k'], tmp_path)
    label = root / 'annotations' / 'training' / 'ADE_training_00000000.png'
    cv2.imwrite(str(label), cv2.cvtColor(cv2.imread(str(label), cv2.IMREAD_UNCHANGED) * 40,
                                         cv2.COLOR_GRAY2BGR))
    (problem,) = inspect_root('ade20k', root, full_configs['ade20k'])
    assert 'ADE_training_00000000.png' in problem and 'not colour renderings' in problem
    label = root / 'annotations' / 'validation' / 'ADE_validation_00000001.png'
    cv2.imwrite(str(label), np.full((10, 10), 200, np.uint8))
    problems = inspect_root('ade20k', root, full_configs['ade20k'])
    assert any('holds label 200' in p and 'model.decode_head.num_classes' in p for p in problems)


def test_imagenet_labels_beyond_the_classifier_and_a_missing_folder_are_named(
        real_layouts, full_configs, tmp_path):
    root = broken_copy(real_layouts['imagenet'], tmp_path)
    (root / 'meta' / 'val.txt').write_text('ILSVRC2012_val_00000001.JPEG 1000\n')
    (problem,) = inspect_root('imagenet', root, full_configs['imagenet'])
    assert 'label 1000 is not one of the classifier\'s 0..999' in problem
    shutil.rmtree(root / 'train')
    problems = inspect_root('imagenet', root, full_configs['imagenet'])
    assert any("train' is not a folder" in p and 'train_dataloader.dataset.data_prefix' in p
               for p in problems)
