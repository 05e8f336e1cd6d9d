# ImageNet-1k pretraining of DeiT-S, plain arm, with the official DeiT recipe (_base_/deit_in1k.py).
_base_ = '../_base_/deit_in1k.py'
