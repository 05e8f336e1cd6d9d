# Mask R-CNN + DeiT-S, plain arm, COCO, 1x schedule, single scale.
_base_ = '../_base_/mask-rcnn_vit_coco.py'
