# UPerNet + DeiT-B, plain arm: mmseg's DeiT UPerNet recipe on ADE20K.
_base_ = '../_base_/upernet_vit_ade20k.py'
model = dict(
    backbone=dict(
        arch='deit_base_patch16_224',
        init_cfg=dict(checkpoint='pretrain/deit-b16_8xb128-300e_in1k-224.pth')),
    decode_head=dict(in_channels=[768, 768, 768, 768]),
    auxiliary_head=dict(in_channels=768))
