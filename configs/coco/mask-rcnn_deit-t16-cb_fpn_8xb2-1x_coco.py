# +CB twin of mask-rcnn_deit-t16_fpn_8xb2-1x_coco.py: the one key in which the arms differ.
_base_ = './mask-rcnn_deit-t16_fpn_8xb2-1x_coco.py'
model = dict(backbone=dict(cb=True))
