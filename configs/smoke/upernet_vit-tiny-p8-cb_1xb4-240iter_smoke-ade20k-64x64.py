# +CB twin of upernet_vit-tiny-p8_1xb4-240iter_smoke-ade20k-64x64.py.
_base_ = './upernet_vit-tiny-p8_1xb4-240iter_smoke-ade20k-64x64.py'
model = dict(backbone=dict(cb=True))
