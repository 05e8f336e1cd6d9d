"""Layer-wise learning-rate decay for mmseg and mmdet models whose backbone answers
``get_layer_depth``: mmpretrain's constructor, handed the backbone's depth function."""
import functools
from typing import Callable, List, Optional

import torch.nn as nn
from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor

from ..registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(LearningRateDecayOptimWrapperConstructor):
    """mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` for a whole segmentor or
    detector: the depth of every parameter comes from ``model.backbone.get_layer_depth(name,
    'backbone.')`` (or the model's own, for a bare backbone), so no list of backbone class names
    is needed (mmseg's and mmdet's own layer-decay constructors raise ``NotImplementedError`` for
    backbones not on theirs), and everything after the backbone's blocks (necks, heads) takes the
    base rate. The backbone's ``no_weight_decay()`` names (timm's: class and register tokens,
    position embedding) take no weight decay unless ``custom_keys`` says otherwise;
    ``norm_decay_mult``, ``bias_decay_mult``, ``flat_decay_mult`` and ``custom_keys`` mean what
    they mean in mmpretrain.

    Config::

        optim_wrapper = dict(
            type='OptimWrapper',
            constructor='cb_transfer.LayerDecayOptimWrapperConstructor',
            optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
            paramwise_cfg=dict(layer_decay_rate=0.65, flat_decay_mult=0.0))
    """

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   get_layer_depth: Optional[Callable] = None, **kwargs) -> None:
        if get_layer_depth is None:  # the whole model, at the top of the recursion
            decay = self.paramwise_cfg.get('layer_decay_rate', 1.0)
            if not 0 < decay <= 1:
                raise ValueError(f'layer_decay_rate={decay!r} must be in (0, 1] '
                                 '(optim_wrapper.paramwise_cfg.layer_decay_rate)')
            backbone = getattr(module, 'backbone', module)
            if not hasattr(backbone, 'get_layer_depth'):
                raise TypeError(f'{type(backbone).__name__} has no get_layer_depth(param_name, '
                                'prefix); LayerDecayOptimWrapperConstructor needs a backbone '
                                'that answers it, such as cb_transfer.ViT')
            backbone_prefix = 'backbone.' if backbone is not module else ''
            get_layer_depth = functools.partial(backbone.get_layer_depth, prefix=backbone_prefix)
            no_decay = {f'{backbone_prefix}{name}': dict(decay_mult=0.0)
                        for name in getattr(backbone, 'no_weight_decay', set)()}
            self.paramwise_cfg['custom_keys'] = {**no_decay,
                                                 **self.paramwise_cfg.get('custom_keys', {})}
        super().add_params(params, module, prefix=prefix, get_layer_depth=get_layer_depth,
                           **kwargs)
