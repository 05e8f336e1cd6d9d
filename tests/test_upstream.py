"""The upstream stage: cb_transfer.ViT in mmpretrain's ImageClassifier, and the checkpoint an
upstream run ends with loading into a downstream backbone, strictly and under weights-only."""
import os

import pytest
import torch
from helpers import REPO, UPSTREAM, run_python
from mmengine.config import Config
from mmengine.registry import DefaultScope

from cb_transfer.models import ViT, load_pretrained


def test_the_classifier_builds_in_mmpretrain_scope_trains_and_gives_timm_pre_logits():
    """In a fresh interpreter, with no import of cb_transfer written: mmengine finds
    type='cb_transfer.ViT' inside mmpretrain's scope; one training step runs; the class token
    (fp32) equals timm's pre-logits for the same weights."""
    proc = run_python(f'''
        import sys
        import timm, torch
        from mmengine.config import Config
        from mmengine.optim import build_optim_wrapper
        from mmengine.registry import init_default_scope
        from mmpretrain.registry import MODELS
        from mmpretrain.structures import DataSample
        cfg = Config.fromfile({str(REPO / UPSTREAM[1])!r})
        init_default_scope('mmpretrain')
        assert 'cb_transfer' not in sys.modules
        # the top-level data_preprocessor goes into the model, as mmengine's Runner does it
        model = MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
        assert 'cb_transfer' in sys.modules  # imported by mmengine through cb_transfer.registry
        print('built', type(model).__name__, type(model.backbone).__module__, model.backbone.cb)

        torch.manual_seed(0)
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
        batch = dict(inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)
                             for _ in range(4)],
                     data_samples=[DataSample().set_gt_label(i % 5) for i in range(4)])
        before = model.backbone.blocks[0].attn.qkv.weight.detach().clone()
        losses = model.train_step(batch, optim)
        changed = not torch.equal(before, model.backbone.blocks[0].attn.qkv.weight)
        print('step', float(losses['loss']) > 0, changed)

        plain = MODELS.build(dict(cfg.model, backbone=dict(cfg.model.backbone, cb=False))).eval()
        reference = timm.create_model('deit_tiny_patch16_224', pretrained=False, patch_size=8,
                                      embed_dim=96, depth=4, num_heads=3, img_size=64,
                                      num_classes=0).eval()
        reference.load_state_dict({{k[len('backbone.'):]: v for k, v in
                                   plain.state_dict().items() if k.startswith('backbone.')}})
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            ours = plain.backbone(x)[-1]
            theirs = reference.forward_head(reference.forward_features(x), pre_logits=True)
        print('pre-logits', tuple(ours.shape), float((ours - theirs).abs().max()))
    ''')
    lines = [line for line in proc.stdout.splitlines()
             if line.startswith(('built ', 'step ', 'pre-logits '))]  # not mmengine's log lines
    assert lines[0] == 'built ImageClassifier cb_transfer.models.vit True'
    assert lines[1] == 'step True True'
    shape, difference = lines[2].split(') ')
    assert shape == 'pre-logits (2, 96' and float(difference) == 0.0


def _upstream_checkpoint(local_suite, arm: str) -> str:
    stem = os.path.splitext(os.path.basename(UPSTREAM[arm == 'cb']))[0]
    run = local_suite.work_dir / 'upstream' / stem / 'seed0'
    return (run / 'last_checkpoint').read_text().strip()


@pytest.mark.parametrize('arm', ['plain', 'cb'])
def test_an_upstream_checkpoint_with_ema_loads_into_the_downstream_backbone(local_suite, arm):
    """The checkpoint an mmpretrain run (EMA hook on) ended with: weights-only loading stays on,
    it loads strictly into a downstream cb_transfer.ViT and gives the classifier's features."""
    path = _upstream_checkpoint(local_suite, arm)
    assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in os.environ
    checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    assert 'ema_state_dict' in checkpoint  # mmengine's EMAHook was on
    cfg = Config.fromstring(checkpoint['meta']['cfg'], '.py')
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        classifier = MODELS.build(cfg.model).eval()
    classifier.load_state_dict(checkpoint['state_dict'])  # the EMA weights mmengine saves

    downstream = ViT(arch='deit_tiny_patch16_224', patch_size=8, embed_dims=96, depth=4,
                     num_heads=3, img_size=64, out_indices=(0, 1, 2, 3), cb=arm == 'cb',
                     init_cfg=dict(type='Pretrained', checkpoint=path)).eval()
    downstream.init_weights()
    blocks = []
    hooks = [b.register_forward_hook(lambda m, a, out: blocks.append(out))
             for b in classifier.backbone.blocks]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        classifier.backbone(x)
        features = downstream(x)
    for hook in hooks:
        hook.remove()
    for ours, theirs in zip(features, blocks):
        expected = theirs[:, 1:].transpose(1, 2).reshape(2, 96, 8, 8)
        assert torch.equal(ours, expected)
    # and those weights are the EMA's, not the raw ones
    raw = checkpoint['ema_state_dict']['module.backbone.blocks.0.attn.qkv.weight']
    assert not torch.equal(raw, checkpoint['state_dict']['backbone.blocks.0.attn.qkv.weight'])


def test_a_mismatched_upstream_checkpoint_fails_naming_keys(local_suite, tmp_path):
    path = _upstream_checkpoint(local_suite, 'plain')
    other_size = ViT(arch='deit_tiny_patch16_224', img_size=64, patch_size=8)
    with pytest.raises(RuntimeError, match=r'mis-shaped \(\d+\): .*blocks\.0\.attn\.qkv\.weight: '
                       r'checkpoint \(288, 96\), model \(576, 192\)'):
        load_pretrained(other_size, path)

    scaled = ViT(arch='deit_tiny_patch16_224', patch_size=8, embed_dims=96, depth=4,
                 num_heads=3, img_size=64, cb=True, cb_scaled=True)
    checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    checkpoint['state_dict'].update({f'backbone.{k}': v for k, v in scaled.state_dict().items()
                                     if k.endswith('.cb.strength')})
    torch.save(checkpoint, tmp_path / 'scaled.pth')
    plain = ViT(arch='deit_tiny_patch16_224', patch_size=8, embed_dims=96, depth=4, num_heads=3,
                img_size=64)
    with pytest.raises(RuntimeError, match=r'unexpected \(4\): blocks\.0\.cb\.strength'):
        load_pretrained(plain, str(tmp_path / 'scaled.pth'))
