"""Find ``mmseg::_base_/...``-style base configs without scanning the model zoo's metafiles.

For every ``package::path`` a config inherits, mmengine 0.10 first looks the path up among the
package's model-zoo entries, parsing every metafile it lists (212 YAML files for mmseg, about
1.3 s), and only when that fails takes the file under the package's ``.mim/configs``. A
``_base_/`` file is never a model-zoo entry, so for those we go straight to mmengine's own second
step: the same file is found, the same config results, and loading one of our configs takes a
tenth of the time (it matters in every tool, test and suite run, which load configs often).
"""
import mmengine.config.config as mmengine_config

_BASE_PREFIX = '_base_/'


def _skip_metafiles_for_base_configs(lookup):
    def external_cfg_path(package_path: str, cfg_file: str) -> str:
        if cfg_file.startswith(_BASE_PREFIX):
            raise ValueError(f'{cfg_file} is a base config, not a model-zoo entry')  # mmengine's
            # caller catches this and takes <package>/.mim/configs/<cfg_file>
        return lookup(package_path, cfg_file)

    external_cfg_path.wrapped = lookup
    return external_cfg_path


def skip_metafiles_for_base_configs() -> None:
    """Install the shortcut (idempotent)."""
    lookup = mmengine_config._get_external_cfg_path
    if not hasattr(lookup, 'wrapped'):
        mmengine_config._get_external_cfg_path = _skip_metafiles_for_base_configs(lookup)
