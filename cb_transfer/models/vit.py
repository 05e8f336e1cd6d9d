"""The backbone ``cb_transfer.ViT``: timm's Vision Transformer, optionally with Context Broadcasting.

The plain arm (``cb=False``) is timm's model, block for block: the modules are timm's own, taken
from ``timm.create_model(arch)``, and the parameter names are timm's (``blocks.0.attn.qkv.weight``),
so timm and DeiT checkpoints load with their own key names. ``cb=True`` attaches a
:class:`ContextBroadcasting` to the chosen blocks and applies it, through a forward hook, to the
output of one of the block's parts; timm's ``Block.forward`` is untouched.
"""
import difflib
from typing import Optional, Sequence, Tuple, Union

import timm
import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from timm.layers import resample_abs_pos_embed
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
# What the backbone returns for each chosen block, in mmpretrain's terms: 'featmap' the patch tokens
# as a (B, C, H/p, W/p) map (segmentation, detection), 'cls_token' the class token, (B, C)
# (classification: with the final norm, timm's pre-logits).
OUT_TYPES = ('featmap', 'cls_token')
SUPPORTED_TIMM_MODULES = ('timm.models.vision_transformer', 'timm.models.deit')


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


def _create_timm_vit(arch: str, **kwargs) -> VisionTransformer:
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(['vit_*', 'deit_*']), n=5)
        raise _config_error('arch', arch, 'is not a timm architecture name' + (
            f'; close matches: {", ".join(close)}' if close else
            "; see timm.list_models('deit_*') and timm.list_models('vit_*')"))
    # Only the original ViT/DeiT layout: one class token whose position embedding is shared
    # with the patches. DeiT's distilled archs: use the plain arch, the loader drops the
    # distillation token from the checkpoint.
    unsupported = _config_error('arch', arch, 'is not supported: it must be a timm '
                                'VisionTransformer with one class token, no register tokens and an '
                                "absolute position embedding (e.g. 'deit_small_patch16_224', "
                                "'vit_base_patch16_224')")
    if timm.models.model_entrypoint(arch).__module__ not in SUPPORTED_TIMM_MODULES:
        raise unsupported
    try:
        vit = timm.create_model(arch, pretrained=False, num_classes=0, global_pool='', **kwargs)
    except (AssertionError, TypeError) as err:  # a ViT variant that cannot be a bare backbone
        raise unsupported from err
    if (type(vit) is not VisionTransformer or vit.cls_token is None or vit.reg_token is not None
            or vit.no_embed_class or vit.num_prefix_tokens != 1 or vit.pos_embed is None):
        raise unsupported
    return vit


@MODELS.register_module()
class ViT(BaseModule):
    """timm's Vision Transformer as an mmseg/mmdet backbone, with optional Context Broadcasting.

    Args:
        arch: A timm ViT/DeiT architecture name, e.g. ``'deit_small_patch16_224'``.
        img_size: The training input size; the position embedding is made (and pretrained
            weights resized) for this grid, and resized again at run time for any other input.
        patch_size, embed_dims, depth, num_heads, mlp_ratio: Override the arch's sizes.
        cb: Add Context Broadcasting: the one key in which the plain and +CB arms differ.
        cb_position: ``'mlp'`` (default), ``'attn'`` or ``'block'``: see ``CB_POSITIONS``.
        cb_scaled: Use the scaled variant (a learned per-channel strength per CB layer).
        cb_layers: Block indices that get CB; None for all.
        out_indices: Blocks whose outputs are returned.
        out_type: ``'featmap'`` (default): each output is the block's patch tokens as a
            (B, C, H/p, W/p) map; ``'cls_token'``: its class token, (B, C), as mmpretrain's
            ``VisionTransformer`` returns it for ``VisionTransformerClsHead``.
        final_norm: Apply the final norm to the output of the last block (when it is returned).
            By default on for ``'cls_token'`` (the final-normed class token is timm's
            pre-logits) and off for ``'featmap'``.
        drop_path_rate: Stochastic depth rate, rising linearly over the blocks as in timm.
        with_cp: Activation checkpointing of each block while training (less memory, more time).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` loads weights through
            :func:`load_pretrained`; other mmengine init configs work as usual.

    Shapes:
        x: (B, 3, H, W), H and W multiples of the patch size -> a tuple of (B, C, H/p, W/p)
        (``out_type='featmap'``) or of (B, C) (``'cls_token'``), one per ``out_indices``.
    """

    def __init__(self,
                 arch: str = 'deit_small_patch16_224',
                 img_size: Union[int, Tuple[int, int]] = 224,
                 patch_size: Optional[int] = None,
                 embed_dims: Optional[int] = None,
                 depth: Optional[int] = None,
                 num_heads: Optional[int] = None,
                 mlp_ratio: Optional[float] = None,
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
        super().__init__(init_cfg=init_cfg)
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
        vit = _create_timm_vit(arch, img_size=size, drop_path_rate=drop_path_rate,
                               dynamic_img_size=True, **overrides)
        patch = vit.patch_embed.patch_size
        if any(s % p for s, p in zip(size, patch)):
            raise _config_error('img_size', img_size, f'does not divide by the patch size {patch}')

        self.arch = arch
        self.embed_dims = vit.embed_dim
        self.num_layers = len(vit.blocks)
        # timm's modules, under timm's names
        self.patch_embed = vit.patch_embed
        self.cls_token = vit.cls_token
        self.pos_embed = vit.pos_embed
        self.pos_drop = vit.pos_drop
        self.norm_pre = vit.norm_pre
        self.blocks = vit.blocks
        self.norm = vit.norm if final_norm else None
        # read by timm's checkpoint_filter_fn when it resamples a pretrained position embedding
        self.num_prefix_tokens = vit.num_prefix_tokens
        self.no_embed_class = vit.no_embed_class

        self.out_indices = _normalise_indices('out_indices', out_indices, self.num_layers)
        self.out_type = out_type
        self.final_norm = final_norm
        self.with_cp = with_cp
        self.cb = cb
        self.cb_position = cb_position
        self.cb_scaled = cb_scaled
        self.cb_layers = (_normalise_indices('cb_layers', cb_layers, self.num_layers)
                          if cb_layers is not None else tuple(range(self.num_layers)))
        if cb:
            for i in self.cb_layers:
                self._add_context_broadcasting(self.blocks[i])

    def _add_context_broadcasting(self, block: nn.Module) -> None:
        block.cb = ContextBroadcasting(self.embed_dims, scaled=self.cb_scaled)
        part = CB_POSITIONS[self.cb_position]
        target = block if part is None else getattr(block, part)
        target.register_forward_hook(block.cb.output_hook)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """The outputs of the ``out_indices`` blocks, as ``out_type`` says."""
        batch = x.shape[0]
        x = self.patch_embed(x)  # (B, h, w, C): timm's dynamic-size patch embedding
        grid = x.shape[1:3]
        x = torch.cat([self.cls_token.expand(batch, -1, -1), x.flatten(1, 2)], dim=1)
        x = self.pos_drop(x + self._pos_embed_for(grid))
        x = self.norm_pre(x)

        outs = []
        for i, block in enumerate(self.blocks):
            if self.with_cp and self.training and x.requires_grad:
                x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
            if i in self.out_indices:
                out = self.norm(x) if self.norm is not None and i == self.num_layers - 1 else x
                if self.out_type == 'cls_token':
                    outs.append(out[:, 0])
                else:
                    outs.append(out[:, self.num_prefix_tokens:].transpose(1, 2).reshape(
                        batch, self.embed_dims, *grid))
        return tuple(outs)

    def _pos_embed_for(self, grid: Tuple[int, int]) -> torch.Tensor:
        """The position embedding for a (h, w) patch grid, resized with timm's resampling."""
        if tuple(grid) == tuple(self.patch_embed.grid_size):
            return self.pos_embed
        return resample_abs_pos_embed(self.pos_embed, new_size=grid,
                                      old_size=self.patch_embed.grid_size,
                                      num_prefix_tokens=self.num_prefix_tokens)

    def init_weights(self) -> None:
        """Load ``init_cfg``'s pretrained checkpoint strictly; other init configs as mmengine does.

        mmengine's own ``Pretrained`` init loads with ``strict=False`` and only warns: a checkpoint
        whose keys all miss loads as nothing. We load through :func:`load_pretrained` instead.
        """
        if isinstance(self.init_cfg, dict) and self.init_cfg.get('type') == 'Pretrained':
            load_pretrained(self, self.init_cfg['checkpoint'], prefix=self.init_cfg.get('prefix'))
            self._is_init = True
        else:
            super().init_weights()

    def no_weight_decay(self) -> set:
        """Parameter names that take no weight decay (besides norms and biases)."""
        return {'pos_embed', 'cls_token'}

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """The depth of a parameter for layer-wise lr decay, and the number of depths.

        Depth 0 is the embedding (patch embedding, class token, position embedding), block i is
        depth i + 1, and everything after the blocks (final norm, and whatever is not in this
        backbone: necks, heads) is the last depth, ``num_layers + 1``.

        Args:
            param_name: The parameter's name, e.g. ``'backbone.blocks.3.mlp.fc1.weight'``.
            prefix: The backbone's prefix in ``param_name``, e.g. ``'backbone.'``.

        Returns:
            (layer_depth, num_depths) with ``num_depths = num_layers + 2``.
        """
        num_depths = self.num_layers + 2
        if not param_name.startswith(prefix):
            return num_depths - 1, num_depths
        name = param_name[len(prefix):]
        if name in ('cls_token', 'pos_embed') or name.startswith('patch_embed.'):
            return 0, num_depths
        if name.startswith('blocks.'):
            return int(name.split('.')[1]) + 1, num_depths
        return num_depths - 1, num_depths
