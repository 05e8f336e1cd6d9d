"""Layer-wise learning-rate decay for any backbone that answers ``get_layer_depth``."""
from typing import List

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor

from ..registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Scale each parameter's lr by ``decay ** (num_layers + 1 - depth)`` (BEiT-style).

    The depth comes from ``model.backbone.get_layer_depth(name, 'backbone.')`` (or the model's own,
    for a bare backbone), so no list of backbone class names is needed: mmseg's and mmdet's own
    layer-decay constructors raise ``NotImplementedError`` for backbones not on theirs. Embeddings
    get the smallest rate, the last block ``decay``, and everything after the blocks (final norm,
    necks, heads) the base rate. Norms, biases, and the backbone's ``no_weight_decay()`` names
    (position embedding, class token) take no weight decay.

    Config::

        optim_wrapper = dict(
            type='OptimWrapper',
            constructor='cb_transfer.LayerDecayOptimWrapperConstructor',
            optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
            paramwise_cfg=dict(layer_decay_rate=0.65))
    """

    def add_params(self, params: List[dict], module: nn.Module, **kwargs) -> None:
        decay = self.paramwise_cfg.get('layer_decay_rate', 1.0)
        if not 0 < decay <= 1:
            raise ValueError(f'layer_decay_rate={decay!r} must be in (0, 1] '
                             '(optim_wrapper.paramwise_cfg.layer_decay_rate)')
        backbone = getattr(module, 'backbone', module)
        if not hasattr(backbone, 'get_layer_depth'):
            raise TypeError(f'{type(backbone).__name__} has no get_layer_depth(param_name, '
                            'prefix); LayerDecayOptimWrapperConstructor needs a backbone that '
                            'answers it, such as cb_transfer.ViT')
        prefix = 'backbone.' if backbone is not module else ''
        no_decay_names = {prefix + n for n in getattr(backbone, 'no_weight_decay', set)()}

        groups = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            depth, num_depths = backbone.get_layer_depth(name, prefix)
            no_decay = param.ndim == 1 or name.endswith('.bias') or name in no_decay_names
            key = (depth, no_decay)
            if key not in groups:
                groups[key] = dict(params=[], param_names=[],
                                   lr=self.base_lr * decay ** (num_depths - 1 - depth),
                                   weight_decay=0.0 if no_decay else self.base_wd)
            groups[key]['params'].append(param)
            groups[key]['param_names'].append(name)
        params.extend(groups[key] for key in sorted(groups))
        print_log(f'layer-wise lr decay {decay}: {len(groups)} parameter groups over '
                  f'{num_depths} depths, lr {self.base_lr * decay ** (num_depths - 1):.3g} '
                  f'(embeddings) to {self.base_lr:.3g} (heads)', logger='current')
