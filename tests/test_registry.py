"""``type='cb_transfer.X'`` resolves inside mmseg's, mmdet's and mmpretrain's scopes with no
import written."""
from helpers import run_python


def test_scoped_type_resolves_without_import():
    """A fresh interpreter: in mmseg's scope, mmengine imports cb_transfer by itself (through
    ``cb_transfer.registry``); mmdet's and mmpretrain's scopes then find the same types through
    the same child registries."""
    proc = run_python('''
        import sys
        from mmengine.registry import init_default_scope
        assert 'cb_transfer' not in sys.modules
        for scope in ('mmseg', 'mmdet', 'mmpretrain'):
            MODELS = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
            init_default_scope(scope)
            module = MODELS.build(dict(type='cb_transfer.ContextBroadcasting'))
            assert 'cb_transfer' in sys.modules  # imported by mmengine, never by this code
            vit = MODELS.build(dict(type='cb_transfer.ViT', arch='deit_tiny_patch16_224',
                                    depth=2, cb=True))
            print(scope, type(module).__module__, type(module).__name__, type(vit).__module__,
                  type(vit).__name__, vit.num_layers, vit.cb)
    ''')
    lines = [line.split() for line in proc.stdout.splitlines()[-3:]]
    for scope, line in zip(('mmseg', 'mmdet', 'mmpretrain'), lines):
        assert line == [scope, 'cb_transfer.models.context_broadcasting', 'ContextBroadcasting',
                        'cb_transfer.models.vit', 'ViT', '2', 'True']


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
