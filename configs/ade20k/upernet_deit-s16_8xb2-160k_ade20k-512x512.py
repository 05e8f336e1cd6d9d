# UPerNet + DeiT-S, plain arm: mmseg's DeiT UPerNet recipe on ADE20K.
_base_ = '../_base_/upernet_vit_ade20k.py'
