"""The backbone ``cb_transfer.ViT``: timm's Vision Transformer plus a set of changes, CB one
of them.

An arm is timm's ``VisionTransformer`` built by ``timm.create_model(arch, **timm_kwargs)`` (any
constructor argument that keeps a dense backbone: registers, LayerScale, QK-norm, no position
embedding on prefix tokens, other norm and MLP layers, ...) and, with ``cb=True``, Context
Broadcasting on the chosen blocks. The backbone *is* that model: it adopts the timm model's
modules, parameters and attributes under timm's names (so timm, DeiT, DeiT III and DINOv2
checkpoints load strictly), takes its dense features from timm's ``forward_intermediates``
(prefix tokens, registers included, dropped; activation checkpointing through
``set_grad_checkpointing``) and its layer depths and no-decay set from timm's ``group_matcher``
and ``no_weight_decay``. CB attaches a :class:`ContextBroadcasting` to a block and applies it,
through a forward hook, to the output of one of the block's parts; timm's ``Block.forward`` is
untouched.

Any input size (timm's ``dynamic_img_size`` and ``dynamic_img_pad``): an input whose sides are no
multiple of the patch size is padded with zeros at the bottom and right before the patch
embedding, as mmseg's ``VisionTransformer`` pads (``patch_pad='corner'``, its default, with which
mmseg's model zoo numbers were measured), and the position embedding is resampled to the padded
grid: see docs/design.md, "Any input size".
"""
import difflib
import inspect
from typing import Dict, Optional, Sequence, Tuple, Union

import timm
import timm.layers
import torch
import torch.nn as nn
from mmengine.model import BaseModule
from timm.layers import resample_abs_pos_embed
from timm.models import group_parameters
from timm.models.vision_transformer import VisionTransformer

from ..registry import MODELS
from .context_broadcasting import ContextBroadcasting
from .pretrained import load_pretrained

# Where CB sits in a timm Block, as the module whose output it transforms:
#   'mlp'   x = x + drop_path(CB(ls2(mlp(norm2(x)))))   the MLP branch, before the residual add
#   'attn'  x = x + drop_path(CB(ls1(attn(norm1(x)))))  the attention branch, likewise
#   'block' x = CB(block(x))                             the block's output, after both adds
# (drop path scales whole samples, so CB before or after it is the same.)
CB_POSITIONS = {'mlp': 'ls2', 'attn': 'ls1', 'block': None}
# What the backbone returns for each chosen block, in mmpretrain's terms: 'featmap' the patch
# tokens as a (B, C, ceil(H/p), ceil(W/p)) map (segmentation, detection), 'cls_token' the class
# token, (B, C) (classification: with the final norm, timm's pre-logits).
OUT_TYPES = ('featmap', 'cls_token')
# timm constructor arguments that cb_transfer.ViT sets itself (from its own keys, or always), and
# those that would make it something else than a dense backbone, with why
OWN_KEYS = {'img_size': 'give img_size= instead', 'patch_size': 'give patch_size= instead',
            'embed_dim': 'give embed_dims= instead', 'depth': 'give depth= instead',
            'num_heads': 'give num_heads= instead', 'mlp_ratio': 'give mlp_ratio= instead',
            'drop_path_rate': 'give drop_path_rate= instead',
            'final_norm': 'give final_norm= instead',
            'dynamic_img_size': 'always on: position embeddings follow the input',
            'dynamic_img_pad': 'always on: inputs of any size are padded, as mmseg\'s ViT pads'}
REFUSED = {
    'num_classes': 'only sizes the classifier head, which a backbone does not have',
    'global_pool': 'only pools for the classifier head, which a backbone does not have',
    'fc_norm': 'only normalises the pooled features of the classifier head',
    'pool_include_prefix': 'only concerns the classifier head\'s pooling',
    'drop_rate': 'is the classifier head\'s dropout',
}
# constructor arguments timm takes as classes, here given by name (looked up in timm.layers,
# then in timm's vision_transformer module, where its block classes are)
CLASS_KEYS = ('mlp_layer', 'embed_layer', 'block_fn')
CLASS_MODULES = (timm.layers, timm.models.vision_transformer)


def _config_error(key: str, value, expected: str) -> ValueError:
    return ValueError(f'{key}={value!r} {expected} (model.backbone.{key} of cb_transfer.ViT)')


def _normalise_indices(key: str, indices: Union[int, Sequence[int]], depth: int) -> Tuple[int]:
    """Turn ``indices`` (negatives count from the end) into sorted block indices in range."""
    values = [indices] if isinstance(indices, int) else list(indices)
    if not values:
        raise _config_error(key, indices, 'is empty; give at least one block index')
    out = []
    for i in values:
        if not isinstance(i, int) or not -depth <= i < depth:
            raise _config_error(key, indices, f'is out of range: block indices of a {depth}-block '
                                f'ViT are 0..{depth - 1} (or -{depth}..-1)')
        out.append(i % depth)
    return tuple(sorted(set(out)))


def check_timm_kwargs(timm_kwargs: Dict, out_type: str) -> Dict:
    """Validate ``timm_kwargs`` against timm's ``VisionTransformer`` constructor; refuse what
    would not keep a dense backbone, naming the key and why; resolve class names."""
    known = set(inspect.signature(VisionTransformer.__init__).parameters) - {'self'}
    resolved = dict(timm_kwargs)
    for key, value in timm_kwargs.items():
        where = f'timm_kwargs.{key}'
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3)
            raise _config_error(where, value, 'is not an argument of timm\'s VisionTransformer'
                                + (f'; close: {", ".join(close)}' if close else ''))
        if key in OWN_KEYS:
            raise _config_error(where, value, f'is set by cb_transfer.ViT itself: {OWN_KEYS[key]}')
        if key in REFUSED:
            raise _config_error(where, value, f'is refused: it {REFUSED[key]}')
        if key == 'patch_drop_rate' and value:
            raise _config_error(where, value, 'is refused: dropping patches leaves no dense map '
                                'of features to return')
        if key == 'class_token' and not value and out_type == 'cls_token':
            raise _config_error(where, value, "is refused with out_type='cls_token': there is "
                                'no class token to return')
        if key in CLASS_KEYS and isinstance(value, str):
            found = next((getattr(m, value) for m in CLASS_MODULES if hasattr(m, value)), None)
            if not callable(found):  # a class, or a partial of one (SwiGLUPacked)
                raise _config_error(where, value, 'is not a class of timm.layers or '
                                    'timm.models.vision_transformer')
            resolved[key] = found
    return resolved


def _create_timm_vit(arch: str, timm_kwargs: Dict, **kwargs) -> VisionTransformer:
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(['vit_*', 'deit*']), n=5)
        raise _config_error('arch', arch, 'is not a timm architecture name' + (
            f'; close matches: {", ".join(close)}' if close else
            "; see timm.list_models('deit*') and timm.list_models('vit_*')"))
    unsupported = _config_error('arch', arch, "is not supported: it must build timm's "
                                'VisionTransformer itself (e.g. deit_small_patch16_224, '
                                'deit3_small_patch16_224, vit_small_patch14_reg4_dinov2); '
                                "DeiT's distilled archs: use the plain arch, the loader drops the "
                                'distillation token')
    try:
        vit = timm.create_model(arch, pretrained=False, num_classes=0, global_pool='', **kwargs,
                                **timm_kwargs)
    except (AssertionError, TypeError, ValueError, KeyError) as err:
        if timm_kwargs:  # the user's arguments, or the arch, may be what timm refuses
            raise _config_error('timm_kwargs', {k: getattr(v, '__name__', v) for k, v in
                                                timm_kwargs.items()},
                                f'does not build with arch={arch!r}: timm says {err!r}') from err
        raise unsupported from err  # a variant that cannot be a bare backbone
    if type(vit) is not VisionTransformer:
        raise unsupported
    return vit


@MODELS.register_module()
class ViT(VisionTransformer, BaseModule):
    """timm's Vision Transformer as an mmpretrain/mmseg/mmdet backbone, plus a set of changes.

    Args:
        arch: A timm architecture that builds ``VisionTransformer``, e.g.
            ``'deit_small_patch16_224'``.
        img_size: The training input size; the position embedding is made (and pretrained
            weights resized, on every load path) for this grid, and resized again at run time
            for any other input.
        patch_size, embed_dims, depth, num_heads, mlp_ratio: Override the arch's sizes.
        timm_kwargs: Any other ``VisionTransformer`` constructor argument that keeps a dense
            backbone (``reg_tokens``, ``init_values``, ``qk_norm``, ``no_embed_class``,
            ``pre_norm``, ``norm_layer``, ``mlp_layer`` by name, ...); see
            :func:`check_timm_kwargs` for what is refused.
        cb: Add Context Broadcasting.
        cb_position: ``'mlp'`` (default), ``'attn'`` or ``'block'``: see ``CB_POSITIONS``.
        cb_scaled: Use the scaled variant (a learned per-channel strength per CB layer).
        cb_layers: Block indices that get CB; None for all.
        out_indices: Blocks whose outputs are returned.
        out_type: ``'featmap'`` (default): each output is the block's patch tokens as a
            (B, C, ceil(H/p), ceil(W/p)) map; ``'cls_token'``: its class token, (B, C), as
            mmpretrain's ``VisionTransformer`` returns it for ``VisionTransformerClsHead``.
        final_norm: Apply the final norm to the output of the last block (when it is
            returned). By default on for ``'cls_token'`` (the final-normed class token is timm's
            pre-logits) and off for ``'featmap'``, where the backbone then has no final norm.
        drop_path_rate: Stochastic depth rate, rising linearly over the blocks as in timm.
        with_cp: Activation checkpointing of each block while training (less memory, more time).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` loads weights through
            :func:`load_pretrained`; other mmengine init configs work as usual.

    Shapes:
        x: (B, 3, H, W), any H and W -> a tuple of (B, C, ceil(H/p), ceil(W/p))
        (``out_type='featmap'``) or of (B, C) (``'cls_token'``), one per ``out_indices``; sides
        that are no multiple of the patch size p are padded with zeros at the bottom and right.
    """

    def __init__(self,
                 arch: str = 'deit_small_patch16_224',
                 img_size: Union[int, Tuple[int, int]] = 224,
                 patch_size: Optional[int] = None,
                 embed_dims: Optional[int] = None,
                 depth: Optional[int] = None,
                 num_heads: Optional[int] = None,
                 mlp_ratio: Optional[float] = None,
                 timm_kwargs: Optional[Dict] = None,
                 cb: bool = False,
                 cb_position: str = 'mlp',
                 cb_scaled: bool = False,
                 cb_layers: Optional[Sequence[int]] = None,
                 out_indices: Union[int, Sequence[int]] = -1,
                 out_type: str = 'featmap',
                 final_norm: Optional[bool] = None,
                 drop_path_rate: float = 0.0,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        BaseModule.__init__(self, init_cfg=init_cfg)
        if cb_position not in CB_POSITIONS:
            raise _config_error('cb_position', cb_position,
                                f'is not one of {", ".join(map(repr, CB_POSITIONS))}')
        if out_type not in OUT_TYPES:
            raise _config_error('out_type', out_type,
                                f'is not one of {", ".join(map(repr, OUT_TYPES))}')
        if final_norm is None:
            final_norm = out_type == 'cls_token'
        overrides = dict(patch_size=patch_size, embed_dim=embed_dims, depth=depth,
                         num_heads=num_heads, mlp_ratio=mlp_ratio)
        overrides = {k: v for k, v in overrides.items() if v is not None}
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        vit = _create_timm_vit(arch, check_timm_kwargs(dict(timm_kwargs or {}), out_type),
                               img_size=size, drop_path_rate=drop_path_rate,
                               dynamic_img_size=True, dynamic_img_pad=True, **overrides)
        if out_type == 'cls_token' and vit.cls_token is None:
            raise _config_error('out_type', out_type, f'needs a class token; arch={arch!r} has '
                                'none (its registers are not one)')
        patch = vit.patch_embed.patch_size
        if any(s % p for s, p in zip(size, patch)):
            raise _config_error('img_size', img_size, f'does not divide by the patch size {patch}')
        # the backbone is timm's model: its modules, parameters and attributes, under its names
        self.__dict__.update(vit.__dict__)
        if not final_norm:  # no final norm among the weights (nor in checkpoints)
            self.norm = nn.Identity()

        self.arch = arch
        self.timm_kwargs = dict(timm_kwargs or {})
        self.embed_dims = self.embed_dim
        self.num_layers = len(self.blocks)
        self.out_indices = _normalise_indices('out_indices', out_indices, self.num_layers)
        self.out_type = out_type
        self.final_norm = final_norm
        self.with_cp = with_cp
        self.set_grad_checkpointing(with_cp)
        self.cb = cb
        self.cb_position = cb_position
        self.cb_scaled = cb_scaled
        self.cb_layers = (_normalise_indices('cb_layers', cb_layers, self.num_layers)
                          if cb_layers is not None else tuple(range(self.num_layers)))
        if cb:
            for i in self.cb_layers:
                self._add_context_broadcasting(self.blocks[i])
        self._register_load_state_dict_pre_hook(self._resize_pos_embed)

    def _add_context_broadcasting(self, block: nn.Module) -> None:
        block.cb = ContextBroadcasting(self.embed_dims, scaled=self.cb_scaled)
        part = CB_POSITIONS[self.cb_position]
        if part is not None and not hasattr(block, part):
            raise _config_error('cb_position', self.cb_position, f'hooks each block\'s {part}, '
                                f'which a {type(block).__name__} does not have; use '
                                "cb_position='block'")
        target = block if part is None else getattr(block, part)
        target.register_forward_hook(block.cb.output_hook)

    def _resize_pos_embed(self, state_dict: dict, prefix: str, *args) -> None:
        """Every load path (a bare ``load_state_dict``, mmengine's ``load_from`` and resume,
        :func:`load_pretrained`) resizes a position embedding of another grid to this one."""
        key = prefix + 'pos_embed'
        if key not in state_dict or self.pos_embed is None:
            return
        if state_dict[key].shape != self.pos_embed.shape:
            state_dict[key] = resample_abs_pos_embed(
                state_dict[key], new_size=self.patch_embed.grid_size,
                num_prefix_tokens=0 if self.no_embed_class else self.num_prefix_tokens)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """The outputs of the ``out_indices`` blocks, as ``out_type`` says; the last block's
        through the final norm where ``final_norm`` (mmseg's convention: timm's ``norm=True``
        would normalise every block's)."""
        indices = list(self.out_indices)
        if self.out_type == 'featmap':
            outs = self.forward_intermediates(x, indices=indices, output_fmt='NCHW',
                                              intermediates_only=True)
            # contiguous NCHW, as timm's maps are (mmcv's CPU RoIAlign needs it)
            return tuple(self._final(i, out.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()
                         if self._normed(i) else out for i, out in zip(indices, outs))
        outs = self.forward_intermediates(x, indices=indices, return_prefix_tokens=True,
                                          output_fmt='NLC', intermediates_only=True)
        return tuple(self._final(i, prefix[:, 0]) for i, (_, prefix) in zip(indices, outs))

    def _normed(self, index: int) -> bool:
        return self.final_norm and index == self.num_layers - 1

    def _final(self, index: int, tokens: torch.Tensor) -> torch.Tensor:
        """The final norm over the channels (last dim) of the last block's output."""
        return self.norm(tokens) if self._normed(index) else tokens

    def init_weights(self) -> None:
        """Load ``init_cfg``'s pretrained checkpoint strictly; other init configs as mmengine does.

        mmengine's own ``Pretrained`` init loads with ``strict=False`` and only warns: a checkpoint
        whose keys all miss loads as nothing. We load through :func:`load_pretrained` instead.
        (timm's own ``init_weights`` ran when timm built the model.)
        """
        if isinstance(self.init_cfg, dict) and self.init_cfg.get('type') == 'Pretrained':
            load_pretrained(self, self.init_cfg['checkpoint'], prefix=self.init_cfg.get('prefix'))
            self._is_init = True
        else:
            BaseModule.init_weights(self)

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """The depth of a parameter for layer-wise lr decay, and the number of depths, from
        timm's ``group_matcher``: depth 0 is the stem (patch embedding, class and register
        tokens, position embedding, pre-norm), block i is depth i + 1, the final norm (where
        there is one) shares the last block's depth (timm's grouping, as its own layer decay
        uses it), and what is not in this backbone (necks, heads) is at the last depth,
        ``num_layers + 1``, which takes the base learning rate.

        Args:
            param_name: The parameter's name, e.g. ``'backbone.blocks.3.mlp.fc1.weight'``.
            prefix: The backbone's prefix in ``param_name``, e.g. ``'backbone.'``.

        Returns:
            (layer_depth, num_depths) with ``num_depths = num_layers + 2``.
        """
        num_depths = self.num_layers + 2
        if not hasattr(self, '_layer_depths'):
            groups = group_parameters(self, self.group_matcher(coarse=False))
            self._layer_depths = {name: min(depth, num_depths - 1)
                                  for depth, names in groups.items() for name in names}
        if not param_name.startswith(prefix):
            return num_depths - 1, num_depths
        return self._layer_depths.get(param_name[len(prefix):], num_depths - 1), num_depths
