# +reg4 twin of upernet_vit-tiny-p8_1xb4-240iter_smoke-ade20k-64x64.py: four register tokens
# (dropped from the features, as the class token is).
_base_ = './upernet_vit-tiny-p8_1xb4-240iter_smoke-ade20k-64x64.py'
model = dict(backbone=dict(timm_kwargs=dict(reg_tokens=4)))
