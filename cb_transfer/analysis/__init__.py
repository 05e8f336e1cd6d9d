"""The CB paper's own measurement: how dense the trained arms' attention is, layer by layer.

- :mod:`.attention` streams the statistics (entropy, distance, query dependence) out of timm's
  attention modules.
- :mod:`.sources` turns checkpoints into backbones and images into inputs.
- :mod:`.report` runs the analysis and writes JSON, a Markdown summary and figures.
- :mod:`.cli` is ``tools/analyze_attention.py`` / ``cb-attention``.
"""
from .attention import STATISTICS, AttentionRecorder, map_statistics, patch_distances
from .report import analyse, summary_markdown, write_outputs

__all__ = ['STATISTICS', 'AttentionRecorder', 'map_statistics', 'patch_distances', 'analyse',
           'summary_markdown', 'write_outputs']
