"""Pretrained checkpoints in every supported layout load into cb_transfer.ViT, or fail loudly."""
import os

import pytest
import timm
import torch
from safetensors.torch import save_file

from cb_transfer.models import ViT

ARCH = 'deit_tiny_patch16_224'


@pytest.fixture(scope='module')
def deit():
    torch.manual_seed(0)
    return timm.create_model(ARCH, pretrained=False).eval()


def pretrained_vit(path, **kwargs):
    model = ViT(arch=ARCH, out_indices=(5, 11),
                init_cfg=dict(type='Pretrained', checkpoint=str(path)), **kwargs)
    model.init_weights()
    return model.eval()


def features(model, x):
    with torch.no_grad():
        if isinstance(model, ViT):
            return model(x)
        return model.forward_intermediates(x, indices=[5, 11], intermediates_only=True)


def assert_same_features(a, b):
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    for fa, fb in zip(features(a, x), features(b, x)):
        torch.testing.assert_close(fa, fb, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('layout', ['plain', 'model', 'state_dict+module', 'mmseg', 'safetensors',
                                    'bin'])
def test_timm_and_deit_layouts_load(tmp_path, deit, layout):
    state = deit.state_dict()  # timm's names, with the classifier head and the final norm
    path = tmp_path / ('weights.safetensors' if layout == 'safetensors' else
                       'weights.bin' if layout == 'bin' else 'weights.pth')
    if layout == 'safetensors':
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        wrapped = {
            'plain': state, 'bin': state,
            'model': {'model': state, 'epoch': 300},  # DeiT's release format
            'state_dict+module': {'state_dict': {f'module.{k}': v for k, v in state.items()}},
            'mmseg': {'meta': {}, 'state_dict': {
                **{f'backbone.{k}': v for k, v in state.items()},
                'decode_head.conv_seg.weight': torch.zeros(2, 8, 1, 1)}},
        }[layout]
        torch.save(wrapped, path)
    assert_same_features(pretrained_vit(path), deit)


def test_load_logs_what_was_loaded_resized_and_dropped(tmp_path, deit, capsys):
    path = tmp_path / 'deit.pth'
    torch.save(deit.state_dict(), path)
    from mmengine.logging import MMLogger
    MMLogger.get_instance('cb_test_load', log_level='INFO')
    model = pretrained_vit(path, img_size=256)
    out = capsys.readouterr().out
    assert len(model.state_dict()) == 12 * 12 + 4  # blocks; patch embedding, cls, pos
    assert 'loaded 148 tensors' in out
    assert 'resized pos_embed (1, 197, 192) -> (1, 257, 192) (grid (16, 16))' in out
    assert 'dropped head.bias, head.weight, norm.bias, norm.weight' in out


def test_distilled_deit_drops_the_distillation_token(tmp_path):
    torch.manual_seed(0)
    distilled = timm.create_model('deit_tiny_distilled_patch16_224', pretrained=False)
    state = distilled.state_dict()
    assert 'dist_token' in state and state['pos_embed'].shape[1] == 198
    path = tmp_path / 'distilled.pth'
    torch.save({'model': state}, path)
    model = pretrained_vit(path)
    pos = state['pos_embed']
    assert torch.equal(model.pos_embed, torch.cat([pos[:, :1], pos[:, 2:]], dim=1))
    assert torch.equal(model.cls_token, state['cls_token'])
    assert torch.equal(model.blocks[11].mlp.fc2.weight, state['blocks.11.mlp.fc2.weight'])


def test_cb_checkpoints_load_with_their_scaled_strengths(tmp_path):
    source = ViT(arch=ARCH, out_indices=(5, 11), cb=True, cb_scaled=True).eval()
    with torch.no_grad():
        for i, block in enumerate(source.blocks):
            block.cb.strength.fill_(0.1 + 0.05 * i)
    path = tmp_path / 'cb_scaled.pth'
    torch.save({'state_dict': source.state_dict()}, path)
    loaded = pretrained_vit(path, cb=True, cb_scaled=True)
    assert torch.equal(loaded.blocks[7].cb.strength, source.blocks[7].cb.strength)
    assert_same_features(loaded, source)

    # a plain checkpoint into the scaled variant: the strengths keep their initial 0.5
    plain_path = tmp_path / 'plain.pth'
    torch.save(ViT(arch=ARCH).state_dict(), plain_path)
    fresh = pretrained_vit(plain_path, cb=True, cb_scaled=True)
    assert torch.all(fresh.blocks[0].cb.strength == 0.5)


def test_a_missing_key_stops_the_load_with_its_name(tmp_path, deit):
    state = deit.state_dict()
    del state['blocks.3.mlp.fc1.weight']
    path = tmp_path / 'incomplete.pth'
    torch.save(state, path)
    with pytest.raises(RuntimeError, match=r'missing \(1\): blocks.3.mlp.fc1.weight'):
        pretrained_vit(path)


def test_a_wrong_shape_stops_the_load(tmp_path):
    small = timm.create_model('deit_small_patch16_224', pretrained=False)
    path = tmp_path / 'deit_small.pth'
    torch.save(small.state_dict(), path)
    with pytest.raises(RuntimeError, match=r'mis-shaped \(\d+\): .*checkpoint \(384,\), model '
                                           r'\(192,\)'):
        pretrained_vit(path)


def test_a_checkpoint_that_loads_as_nothing_is_refused(tmp_path):
    """mmseg's known failure: keys that all miss (here, another naming) load silently as nothing."""
    path = tmp_path / 'renamed.pth'
    torch.save({f'encoder.layer{k}': v for k, v in ViT(arch=ARCH).state_dict().items()}, path)
    with pytest.raises(RuntimeError, match='missing'):
        pretrained_vit(path)


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / 'pwned'

    class Payload:
        def __reduce__(self):
            return (os.system, (f'touch {marker}',))

    path = tmp_path / 'evil.pth'
    torch.save({'model': {'cls_token': torch.zeros(1)}, 'extra': Payload()}, path)
    with pytest.raises(RuntimeError, match='refused to load .* untrusted'):
        pretrained_vit(path)
    assert not marker.exists()


def test_a_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"pretrain/nothing.pth' not found \(model.backbone"
                                                r".init_cfg.checkpoint\).*Pretrained weights"):
        pretrained_vit('pretrain/nothing.pth')
