# +CB twin of vit-tiny-p8_1xb32-12e_smoke-in1k-64x64.py.
_base_ = './vit-tiny-p8_1xb32-12e_smoke-in1k-64x64.py'
model = dict(backbone=dict(cb=True))
