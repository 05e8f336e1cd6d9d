# +CB twin of upernet_deit-s16-ld_8xb2-160k_ade20k-512x512.py: CB on, and the backbone
# pretrained with CB (configs/imagenet/deit-s16-cb_8xb128-300e_in1k-224.py).
_base_ = './upernet_deit-s16-ld_8xb2-160k_ade20k-512x512.py'
model = dict(backbone=dict(
    cb=True,
    init_cfg=dict(checkpoint='pretrain/deit-s16-cb_8xb128-300e_in1k-224.pth')))
