"""cb_transfer: Context Broadcasting on timm's ViT, benchmarked downstream with mmseg and mmdet.

Importing the package registers every module in the ``cb_transfer`` registries (for
``custom_imports``), allowlists the types mmengine writes into its checkpoints so that they load
under torch's weights-only default (see :mod:`cb_transfer.safe_load`), and lets mmengine find
``mmseg::_base_/...`` base configs without parsing the model zoo's metafiles each time (see
:mod:`cb_transfer.config_lookup`).
"""
import warnings

# mmengine imports pkg_resources, deprecated by setuptools; a warning on every start tells a user
# nothing they can act on
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

from .config_lookup import skip_metafiles_for_base_configs  # noqa: E402
from .safe_load import allow_mmengine_checkpoints  # noqa: E402

allow_mmengine_checkpoints()
skip_metafiles_for_base_configs()

from . import engine, models, optim  # noqa: E402,F401  (registers the modules)
from .registry import HOOKS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS, TRANSFORMS  # noqa: E402,F401

__version__ = '0.1.0'
