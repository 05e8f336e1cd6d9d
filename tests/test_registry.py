"""``type='cb_transfer.X'`` resolves inside mmseg's and mmdet's scopes with no import written."""
import pytest
from conftest import run_python


@pytest.mark.parametrize('scope', ['mmseg', 'mmdet'])
def test_scoped_type_resolves_without_import(scope):
    proc = run_python(f'''
        import sys
        from mmengine.registry import init_default_scope
        from {scope}.registry import MODELS
        init_default_scope('{scope}')
        assert 'cb_transfer' not in sys.modules
        module = MODELS.build(dict(type='cb_transfer.ContextBroadcasting'))
        assert 'cb_transfer' in sys.modules  # imported by mmengine through cb_transfer.registry
        print(type(module).__module__, type(module).__name__)
        vit = MODELS.build(dict(type='cb_transfer.ViT', arch='deit_tiny_patch16_224', depth=2,
                                cb=True))
        print(type(vit).__module__, type(vit).__name__, vit.num_layers, vit.cb)
    ''')
    assert proc.stdout.split() == ['cb_transfer.models.context_broadcasting',
                                   'ContextBroadcasting', 'cb_transfer.models.vit', 'ViT', '2',
                                   'True']


def test_custom_imports_registers_everything(tmp_path):
    """``custom_imports`` registers every module, and mmseg then builds the backbone."""
    config = tmp_path / 'cfg.py'
    config.write_text("custom_imports = dict(imports=['cb_transfer'])\n"
                      "backbone = dict(type='cb_transfer.ViT', arch='deit_tiny_patch16_224', "
                      "depth=2)\n")
    proc = run_python(f'''
        import sys
        from mmengine.config import Config
        cfg = Config.fromfile('{config}')
        assert 'cb_transfer' in sys.modules
        from cb_transfer.registry import HOOKS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS
        print(sorted(MODELS.module_dict), sorted(OPTIM_WRAPPER_CONSTRUCTORS.module_dict),
              sorted(HOOKS.module_dict))
        from mmseg.registry import MODELS as MMSEG_MODELS
        print(type(MMSEG_MODELS.build(cfg.backbone)).__name__)
    ''')
    assert proc.stdout.splitlines()[-2:] == [
        "['ContextBroadcasting', 'ViT'] ['LayerDecayOptimWrapperConstructor'] "
        "['ExactResumeHook']", 'ViT']
