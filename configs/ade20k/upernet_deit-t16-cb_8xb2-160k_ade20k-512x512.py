# +CB twin of upernet_deit-t16_8xb2-160k_ade20k-512x512.py: the one key in which the arms differ.
_base_ = './upernet_deit-t16_8xb2-160k_ade20k-512x512.py'
model = dict(backbone=dict(cb=True))
