"""cb_transfer's registries: children of mmengine's under the scope ``cb_transfer``.

A config inside mmseg's or mmdet's scope names ``type='cb_transfer.ViT'``; mmengine then imports
this module by itself (``{scope}.registry``), finds these registries among the children of its
root registries, and imports the ``locations`` below, which register the modules. No import has to
be written anywhere; ``custom_imports=dict(imports=['cb_transfer'])`` works as well.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import Registry
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='cb_transfer',
                  locations=['cb_transfer.models'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry('optimizer wrapper constructor',
                                      parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
                                      scope='cb_transfer', locations=['cb_transfer.optim'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='cb_transfer',
                 locations=['cb_transfer.engine'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope='cb_transfer',
                      locations=['cb_transfer.robustness.corruptions'])
