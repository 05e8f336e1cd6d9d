# +CB twin of mask-rcnn_deit-b16_fpn_8xb2-ms-3x_coco.py: CB on, and the backbone
# pretrained with CB (configs/imagenet/deit-b16-cb_8xb128-300e_in1k-224.py).
_base_ = './mask-rcnn_deit-b16_fpn_8xb2-ms-3x_coco.py'
model = dict(backbone=dict(
    cb=True,
    init_cfg=dict(checkpoint='pretrain/deit-b16-cb_8xb128-300e_in1k-224.pth')))
