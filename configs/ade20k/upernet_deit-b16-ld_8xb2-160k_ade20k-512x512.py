# UPerNet + DeiT-B with layer-wise lr decay (BEiT-style fine-tuning): the same model
# and schedule as the plain recipe, the optimizer of mmseg's BEiT/MAE UPerNet configs
# (AdamW 1e-4, weight decay 0.05, layer decay 0.65) through
# cb_transfer.LayerDecayOptimWrapperConstructor, which needs no backbone-name list.
_base_ = './upernet_deit-b16_8xb2-160k_ade20k-512x512.py'
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    constructor='cb_transfer.LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=0.65, flat_decay_mult=0.0))
