"""Optimizer-wrapper constructors registered in ``cb_transfer``'s registry."""
from .layer_decay import LayerDecayOptimWrapperConstructor

__all__ = ['LayerDecayOptimWrapperConstructor']
