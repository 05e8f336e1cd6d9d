# +CB+reg4 twin of vit-tiny-p8_1xb32-12e_smoke-in1k-64x64.py: CB and four register tokens.
_base_ = './vit-tiny-p8-cb_1xb32-12e_smoke-in1k-64x64.py'
model = dict(backbone=dict(timm_kwargs=dict(reg_tokens=4)))
