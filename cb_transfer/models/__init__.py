"""Modules registered in ``cb_transfer``'s model registry: Context Broadcasting and the ViT."""
from .context_broadcasting import ContextBroadcasting
from .pretrained import load_pretrained, read_state_dict
from .vit import ViT

__all__ = ['ContextBroadcasting', 'ViT', 'load_pretrained', 'read_state_dict']
