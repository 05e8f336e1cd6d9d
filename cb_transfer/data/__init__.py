"""Generated data sets in ImageNet, ADE20K and COCO layout, for the CPU smoke pipeline."""
from .synthetic import (COCO_CLASSES, IMAGENET_CLASSES, make_ade20k, make_coco, make_imagenet,
                        make_smoke_data)

__all__ = ['COCO_CLASSES', 'IMAGENET_CLASSES', 'make_ade20k', 'make_coco', 'make_imagenet',
           'make_smoke_data']
