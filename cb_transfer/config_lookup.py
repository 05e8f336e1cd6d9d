"""Where configs are found: cb_transfer's own (the package carries them, as OpenMMLab packages do)
and the ``package::path`` bases a config inherits.

cb_transfer's configs are written once, in the source tree's ``configs/``; the package reaches them
as ``cb_transfer/.mim/configs`` (a link in the source tree, a copy in a wheel), where mmengine looks
for ``cb_transfer::<path under configs/>``. A config or suite named in a suite file or on the
command line is found by :func:`find_config`: ``cb_transfer::path``, an absolute path, a path
relative to the current directory, or ``configs/<path>`` relative to the package's configs (so that
the presets work from any directory, installed from a wheel or not).

``cb_transfer::`` resolves once ``cb_transfer`` is imported (our tools import it; mmengine knows
only the OpenMMLab packages by name). Two shortcuts in mmengine's lookup of ``package::path``
(installed once, on import):

- mmengine 0.10 first looks the path up among the package's model-zoo entries, parsing every
  metafile it lists (212 YAML files for mmseg, about 1.3 s), and only then takes the file under
  the package's ``.mim/configs``. A ``_base_/`` file is never a model-zoo entry, and a package
  without a model index (cb_transfer) has none, so for those we go straight to mmengine's own
  second step: the same file is found, the same config results, in a ninth of the time.
- mmengine finds a package's folder from its distribution's location, which for an editable
  install (PEP 660) is the environment's site-packages, not the source tree: there, the package's
  importable location is taken instead.
"""
import importlib.util
import os.path as osp
from pathlib import Path
from typing import List

import mmengine.config.config as mmengine_config
import mmengine.config.utils as mmengine_config_utils

_BASE_PREFIX = '_base_/'
PACKAGE = Path(__file__).resolve().parent
CONFIGS = PACKAGE / '.mim' / 'configs'
SCOPE = 'cb_transfer::'


def find_config(name: str, what: str = 'config') -> Path:
    """The file a config name means (see the module's docstring).

    Raises:
        FileNotFoundError: naming where it was looked for.
    """
    candidates: List[Path] = []
    if name.startswith(SCOPE):
        candidates.append(CONFIGS / name[len(SCOPE):])
    else:
        path = Path(name).expanduser()
        candidates.append(path.resolve() if path.is_absolute() else Path.cwd() / path)
        if not path.is_absolute() and path.parts[:1] == ('configs',):
            candidates.append(CONFIGS.joinpath(*path.parts[1:]))
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(f"{what} '{name}' not found (looked for "
                            + ', '.join(str(c) for c in candidates) + ')')


def preset_names() -> List[str]:
    """The suites the package carries (``configs/suites/<name>.py``)."""
    return sorted(p.stem for p in (CONFIGS / 'suites').glob('*.py'))


def find_suite(name: str) -> Path:
    """A suite by preset name (``smoke``), by ``cb_transfer::suites/...`` or by file."""
    if name in preset_names():
        return (CONFIGS / 'suites' / f'{name}.py').resolve()
    try:
        return find_config(name, 'suite file')
    except FileNotFoundError as err:
        raise FileNotFoundError(f'{err}; presets: {", ".join(preset_names())}') from None


def _skip_metafiles(lookup):
    def external_cfg_path(package_path: str, cfg_file: str) -> str:
        if cfg_file.startswith(_BASE_PREFIX) or \
                not osp.isfile(osp.join(package_path, '.mim', 'model-index.yml')):
            # mmengine's caller catches this and takes <package>/.mim/configs/<cfg_file>
            raise ValueError(f'{cfg_file} is not a model-zoo entry of {package_path}')
        return lookup(package_path, cfg_file)

    external_cfg_path.wrapped = lookup
    return external_cfg_path


def _importable_location(find):
    def installed_path(package: str) -> str:
        path = find(package)
        if not osp.isdir(path):  # an editable install: the distribution is not the source
            spec = importlib.util.find_spec(package)
            if spec is not None and spec.origin is not None:
                return osp.dirname(spec.origin)
        return path

    installed_path.wrapped = find
    return installed_path


def skip_metafiles_for_base_configs() -> None:
    """Let mmengine resolve ``cb_transfer::`` (its list of packages with configs is closed) and
    install both shortcuts (idempotent)."""
    mmengine_config_utils.MODULE2PACKAGE.setdefault('cb_transfer', 'cb_transfer')
    if not hasattr(mmengine_config._get_external_cfg_path, 'wrapped'):
        mmengine_config._get_external_cfg_path = _skip_metafiles(
            mmengine_config._get_external_cfg_path)
    if not hasattr(mmengine_config.get_installed_path, 'wrapped'):
        mmengine_config.get_installed_path = _importable_location(
            mmengine_config.get_installed_path)
