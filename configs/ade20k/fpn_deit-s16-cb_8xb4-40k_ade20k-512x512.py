# +CB twin of fpn_deit-s16_8xb4-40k_ade20k-512x512.py: the one key in which the arms differ.
_base_ = './fpn_deit-s16_8xb4-40k_ade20k-512x512.py'
model = dict(backbone=dict(cb=True))
