"""How dense a ViT's attention is, per layer and head: the CB paper's measurement, streamed.

The attention probabilities are read from timm's own ``Attention`` modules: while analysing, their
fused path is switched off and a forward hook on ``attn_drop`` (the identity in eval mode) sees
each softmax map (B, heads, N, N). Attention variants whose map is not one softmax (timm's
``DiffAttention``, ``attn_layer='diff'``: the difference of two) are refused. The hook reduces
the map at once to a few numbers per image and head, added to running sums, so that only one
layer's map exists at a time (and a 1333x800 input, N = 4151 tokens, never holds all layers'
maps). timm's ``Block.forward`` is not touched.

Per map (one image, one head; N tokens = the model's prefix tokens, counted from the model
(``num_prefix_tokens``: the class token, registers), then the patches):

- ``entropy``: the paper's measure. The mean over all N queries of H(a_q) / log N, where a_q is the
  query's attention over all N keys (prefix tokens included) and log N the entropy of uniform
  attention over them: 1 is uniform, 0 attends to a single token.
- ``gap``: the mean over queries of log N - H(a_q), in nats: how far from uniform.
- ``distance``: mean attention distance in pixels, as in the ViT paper's figure: for each patch
  query, the distance between its patch centre and each patch key's centre, weighted by the
  attention renormalised over the patch keys (prefix tokens left out as queries and as keys),
  averaged over the patch queries.
- ``nmi``: how much attention depends on the query: with queries equally likely, the key
  distribution is the mean of the rows, m = mean_q a_q, and the mutual information between query
  and key is I = H(m) - mean_q H(a_q). ``nmi`` = I / H(m): 0 when every query attends alike (as
  CB's own uniform attention does), 1 when each query's attention is a single key and the queries
  pick different keys; 0 when H(m) = 0.

Each figure is averaged over the images analysed.
"""
import contextlib
import math
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Tuple

import torch
import torch.nn as nn

STATISTICS = ('entropy', 'gap', 'distance', 'nmi')


def patch_distances(grid: Tuple[int, int], patch: Tuple[int, int]) -> torch.Tensor:
    """(P, P) distances in pixels between the centres of a (h, w) grid of patches, row-major."""
    rows, cols = torch.meshgrid(torch.arange(grid[0], dtype=torch.float64),
                                torch.arange(grid[1], dtype=torch.float64), indexing='ij')
    centres = torch.stack([rows.flatten() * patch[0], cols.flatten() * patch[1]], dim=1)
    return torch.cdist(centres, centres)


def map_statistics(attn: torch.Tensor, distances: torch.Tensor,
                   prefix: int = 1) -> Dict[str, torch.Tensor]:
    """The statistics of attention maps whose first ``prefix`` tokens are not patches.

    Args:
        attn: (B, N, N) attention probabilities (rows sum to 1), tokens 0..prefix-1 the prefix
            tokens (class token, registers).
        distances: (N - prefix, N - prefix) pixel distances between patch centres.
        prefix: How many prefix tokens come before the patches.

    Returns:
        {statistic: (B,)} as the module docstring defines them.
    """
    attn = attn.double()
    tokens = attn.shape[-1]
    log_n = math.log(tokens)
    row_entropy = -torch.xlogy(attn, attn).sum(-1)                     # (B, N)
    marginal = attn.mean(1)                                            # (B, N)
    marginal_entropy = -torch.xlogy(marginal, marginal).sum(-1)        # (B,)
    information = marginal_entropy - row_entropy.mean(-1)
    nmi = torch.where(marginal_entropy > 1e-12,
                      information / marginal_entropy.clamp_min(1e-12),
                      torch.zeros_like(information))
    patches = attn[:, prefix:, prefix:]
    mass = patches.sum(-1).clamp_min(1e-300)
    distance = ((patches * distances).sum(-1) / mass).mean(-1)
    return dict(entropy=row_entropy.mean(-1) / log_n, gap=log_n - row_entropy.mean(-1),
                distance=distance, nmi=nmi.clamp(0.0, 1.0))


@dataclass
class RunningStatistics:
    """Sums over images of each statistic, per layer and head."""
    num_layers: int
    num_heads: int
    images: int = 0
    sums: Dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sums = {s: torch.zeros(self.num_layers, self.num_heads, dtype=torch.float64)
                     for s in STATISTICS}

    def add(self, layer: int, head: int, stats: Dict[str, torch.Tensor]) -> None:
        for name, values in stats.items():
            self.sums[name][layer, head] += values.sum().item()

    def means(self) -> Dict[str, List[List[float]]]:
        """{statistic: [layer][head]} averaged over the images."""
        n = max(self.images, 1)
        return {name: (total / n).tolist() for name, total in self.sums.items()}


def _attention_modules(model: nn.Module) -> List[nn.Module]:
    """The blocks' attention modules: timm's ``Attention``, whose map is one softmax."""
    from timm.models.vision_transformer import Attention
    blocks = getattr(model, 'blocks', None)
    if blocks is None:
        raise TypeError(f'{type(model).__name__} has no transformer blocks (model.blocks) to '
                        'analyse; give a cb_transfer.ViT or a timm VisionTransformer')
    for block in blocks:
        if not isinstance(block.attn, Attention):
            raise TypeError(f'{type(block.attn).__name__} attention is not one softmax map per '
                            "head (timm's Attention); its statistics would not mean what they "
                            "say (e.g. attn_layer='diff' subtracts two maps)")
    return [block.attn for block in blocks]


class AttentionRecorder:
    """Streams the attention statistics of a timm ViT (``cb_transfer.ViT`` or timm's own).

    Use::

        recorder = AttentionRecorder(model)
        with recorder.recording():
            for image in images:          # (1, 3, H, W)
                recorder(image)
        recorder.stats.means()
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.attentions = _attention_modules(model)
        self.patch = tuple(model.patch_embed.patch_size)
        self.prefix = int(getattr(model, 'num_prefix_tokens', 1))  # class token, registers
        self.stats = RunningStatistics(len(self.attentions), self.attentions[0].num_heads)
        self._grid = None
        self._distances = {}

    def _distances_for(self, grid: Tuple[int, int]) -> torch.Tensor:
        if grid not in self._distances:
            self._distances = {grid: patch_distances(grid, self.patch)}  # one grid cached
        return self._distances[grid]

    def _hook(self, layer: int):
        def reduce(module, args, output):
            distances = self._distances_for(self._grid)
            if output.shape[-1] != distances.shape[0] + self.prefix:
                raise RuntimeError(f'attention over {output.shape[-1]} tokens, expected '
                                   f'{self.prefix} prefix tokens and {distances.shape[0]} '
                                   'patches')
            for head in range(output.shape[1]):  # one head at a time bounds the temporaries
                self.stats.add(layer, head,
                               map_statistics(output[:, head], distances, self.prefix))
        return reduce

    @contextlib.contextmanager
    def recording(self) -> Iterator['AttentionRecorder']:
        """Hooks on, fused attention off (timm's explicit softmax path), eval mode; all undone
        on exit."""
        fused = [a.fused_attn for a in self.attentions]
        was_training = self.model.training
        handles = [a.attn_drop.register_forward_hook(self._hook(i))
                   for i, a in enumerate(self.attentions)]
        for a in self.attentions:
            a.fused_attn = False
        self.model.eval()
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()
            for a, f in zip(self.attentions, fused):
                a.fused_attn = f
            self.model.train(was_training)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> None:
        """Analyse (B, 3, H, W) inputs of any size: the patches are those of the grid the model
        itself makes, ceil(H/p) x ceil(W/p) where it pads (``cb_transfer.ViT``)."""
        self._grid = tuple(self.model.patch_embed.dynamic_feat_size(images.shape[-2:]))
        self.model(images)
        self.stats.images += images.shape[0]

    @property
    def grid(self) -> Tuple[int, int]:
        """The (h, w) patch grid of the last input analysed."""
        return self._grid

    def uniform_distance(self) -> float:
        """The mean attention distance of uniform attention on the last grid analysed."""
        distances = self._distances_for(self._grid)
        return distances.mean().item()
