# Semantic FPN + DeiT-S, plain arm, on ADE20K.
_base_ = '../_base_/fpn_vit_ade20k.py'
