# +reg4 twin of vit-tiny-p8_1xb32-12e_smoke-in1k-64x64.py: four register tokens (Darcet et al.
# 2023), any timm VisionTransformer argument given as timm_kwargs.
_base_ = './vit-tiny-p8_1xb32-12e_smoke-in1k-64x64.py'
model = dict(backbone=dict(timm_kwargs=dict(reg_tokens=4)))
