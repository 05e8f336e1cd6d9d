"""cb_transfer: Context Broadcasting on timm's ViT, benchmarked downstream with mmseg and mmdet.

Importing the package registers every module in the ``cb_transfer`` registries (for
``custom_imports``) and allowlists the types mmengine writes into its checkpoints so that they load
under torch's weights-only default (see :mod:`cb_transfer.safe_load`).
"""
import warnings

# mmengine imports pkg_resources, deprecated by setuptools; a warning on every start tells a user
# nothing they can act on
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

from .safe_load import allow_mmengine_checkpoints  # noqa: E402

allow_mmengine_checkpoints()

from . import engine, models, optim  # noqa: E402,F401  (registers the modules)
from .registry import HOOKS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS  # noqa: E402,F401

__version__ = '0.1.0'
