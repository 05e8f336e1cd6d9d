"""Context Broadcasting (CB): uniform attention that mixes every token with the mean of all tokens.

Hyeon-Woo et al., "Scratching Visual Transformer's Back with Uniform Attention", ICCV 2023
(arXiv 2210.08457).
"""
from typing import Optional

import torch
import torch.nn as nn

from ..registry import MODELS


@MODELS.register_module()
class ContextBroadcasting(nn.Module):
    """``CB(x) = 0.5 * x + 0.5 * mean_tokens(x)``, or its scaled variant.

    The mean runs over all tokens, class token included: it is what uniform attention (softmax of
    all-zero logits) gives every token. Plain CB has no parameters. The scaled variant
    (``scaled=True``) learns a per-channel strength ``s`` (C parameters, initialised to 0.5, so it
    starts as plain CB): ``(1 - s) * x + s * mean_tokens(x)``. This is this project's reading of the
    paper's CB with dimension scaling.

    Args:
        dim: Channels C. Required when ``scaled``.
        scaled: Learn the per-channel strength.

    Shapes:
        x: (B, N, C) -> (B, N, C).
    """

    def __init__(self, dim: Optional[int] = None, scaled: bool = False) -> None:
        super().__init__()
        if scaled and not dim:
            raise ValueError(f'ContextBroadcasting(scaled=True) needs dim, the channel count; '
                             f'got dim={dim!r}')
        self.dim = dim
        self.strength = nn.Parameter(torch.full((dim,), 0.5)) if scaled else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One fused pass (lerp: x + w * (mean - x)) rather than three element-wise ops: on a CPU
        # these passes are memory-bound (docs/design.md, "Cost").
        weight = 0.5 if self.strength is None else self.strength
        return torch.lerp(x, x.mean(dim=1, keepdim=True), weight)

    def output_hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        """A forward hook that applies CB to ``module``'s output (how the ViT places CB)."""
        return self(output)

    def extra_repr(self) -> str:
        return f'dim={self.dim}, scaled=True' if self.strength is not None else 'scaled=False'
