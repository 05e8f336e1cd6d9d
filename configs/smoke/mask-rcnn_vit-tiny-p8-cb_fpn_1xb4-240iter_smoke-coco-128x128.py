# +CB twin of mask-rcnn_vit-tiny-p8_fpn_1xb4-240iter_smoke-coco-128x128.py.
_base_ = './mask-rcnn_vit-tiny-p8_fpn_1xb4-240iter_smoke-coco-128x128.py'
model = dict(backbone=dict(cb=True))
