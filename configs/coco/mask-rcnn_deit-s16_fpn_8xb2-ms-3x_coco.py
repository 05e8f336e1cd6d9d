# Mask R-CNN + DeiT-S, plain arm, COCO, 3x schedule, multi-scale.
_base_ = '../_base_/mask-rcnn_vit_ms-3x_coco.py'
