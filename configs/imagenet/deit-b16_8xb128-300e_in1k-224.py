# ImageNet-1k pretraining of DeiT-B, plain arm, with the official DeiT recipe (_base_/deit_in1k.py).
_base_ = '../_base_/deit_in1k.py'
model = dict(backbone=dict(arch='deit_base_patch16_224'), head=dict(in_channels=768))
