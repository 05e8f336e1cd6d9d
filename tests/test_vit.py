"""cb_transfer.ViT: the plain arm is timm's model; each CB placement matches its formula."""
import pytest
import timm
import torch

from cb_transfer.models import ViT

ARCH = 'deit_tiny_patch16_224'
INDICES = (2, 5, 8, 11)


def timm_vit(arch=ARCH, **kwargs):
    torch.manual_seed(0)
    return timm.create_model(arch, pretrained=False, dynamic_img_size=True, **kwargs).eval()


def backbone_state(model):
    """A timm model's weights without the classifier and the final norm."""
    return {k: v for k, v in model.state_dict().items()
            if not k.startswith(('head.', 'norm.', 'fc_norm.'))}


def cb_reference(t):
    return 0.5 * t + 0.5 * t.mean(dim=1, keepdim=True)


def reference_forward(vit, x, position, layers):
    """The +CB forward written out by hand from timm's block parts (DESIGN.md's formulas).

    DeiT's layer scales are identities, so ls1/ls2 (where CB's hooks sit) are left out.
    """
    x = vit.patch_embed(x)
    grid = x.shape[1:3]
    x = torch.cat([vit.cls_token.expand(x.shape[0], -1, -1), x.flatten(1, 2)], 1) + vit.pos_embed
    outs = []
    for i, blk in enumerate(vit.blocks):
        assert isinstance(blk.ls1, torch.nn.Identity) and isinstance(blk.ls2, torch.nn.Identity)
        on = i in layers
        attn = blk.attn(blk.norm1(x))
        x = x + (cb_reference(attn) if on and position == 'attn' else attn)
        mlp = blk.mlp(blk.norm2(x))
        x = x + (cb_reference(mlp) if on and position == 'mlp' else mlp)
        if on and position == 'block':
            x = cb_reference(x)
        if i in INDICES:
            outs.append(x[:, 1:].transpose(1, 2).reshape(x.shape[0], -1, *grid))
    return outs


@pytest.mark.parametrize('size', [(224, 224), (512, 512), (320, 480)])
def test_plain_arm_equals_timm(size):
    reference = timm_vit()
    model = ViT(arch=ARCH, out_indices=INDICES).eval()
    model.load_state_dict(backbone_state(reference))
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        ours = model(x)
        theirs = reference.forward_intermediates(x, indices=list(INDICES), intermediates_only=True)
    assert len(ours) == len(INDICES)
    for a, b in zip(ours, theirs):
        assert a.shape == (2, 192, size[0] // 16, size[1] // 16)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_plain_arm_at_512_with_the_grid_resized_at_load(tmp_path):
    """img_size=512 resizes the pretrained 14x14 grid to 32x32 once, as run-time resizing does."""
    reference = timm_vit()
    path = tmp_path / 'deit_tiny.pth'
    torch.save(reference.state_dict(), path)
    model = ViT(arch=ARCH, img_size=512, out_indices=INDICES, final_norm=True,
                init_cfg=dict(type='Pretrained', checkpoint=str(path))).eval()
    model.init_weights()
    assert model.pos_embed.shape == (1, 1 + 32 * 32, 192)
    x = torch.randn(1, 3, 512, 512)
    with torch.no_grad():
        ours = model(x)
        theirs = reference.forward_intermediates(x, indices=list(INDICES), intermediates_only=True)
        last = reference.forward_intermediates(x, indices=[11], norm=True, intermediates_only=True)
    for a, b in zip(ours[:-1], theirs[:-1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[-1], last[0], rtol=1e-5, atol=1e-5)  # final_norm


@pytest.mark.parametrize('position', ['mlp', 'attn', 'block'])
@pytest.mark.parametrize('layers', [None, (0, 7, 11)])
def test_cb_placements_equal_their_formula(position, layers):
    model = ViT(arch=ARCH, out_indices=INDICES, cb=True, cb_position=position,
                cb_layers=layers).eval()
    plain = ViT(arch=ARCH, out_indices=INDICES).eval()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ours = model(x)
        expected = reference_forward(plain, x, position, layers or range(12))
        unchanged = plain(x)
    for a, b, c in zip(ours, expected, unchanged):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(a, c, atol=1e-3)  # CB does change the features


def test_cb_adds_no_parameters_and_scaled_adds_c_per_layer():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    plain = ViT(arch=ARCH)
    assert count(ViT(arch=ARCH, cb=True)) == count(plain)
    assert count(ViT(arch=ARCH, cb=True, cb_scaled=True)) == count(plain) + 12 * 192
    assert count(ViT(arch=ARCH, cb=True, cb_scaled=True, cb_layers=[3, 4])) == count(plain) + 2 * 192


def test_with_cp_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    model = ViT(arch=ARCH, out_indices=INDICES, cb=True, cb_scaled=True).train()
    checkpointed = ViT(arch=ARCH, out_indices=INDICES, cb=True, cb_scaled=True,
                       with_cp=True).train()
    checkpointed.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 96, 96)
    outs = [m(x) for m in (model, checkpointed)]
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    for m, out in zip((model, checkpointed), outs):
        sum(o.square().mean() for o in out).backward()
    grads = [{n: p.grad for n, p in m.named_parameters()} for m in (model, checkpointed)]
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-6,
                                   msg=name)


@pytest.mark.parametrize('arch, dims', [('deit_tiny_patch16_224', 192),
                                        ('deit_small_patch16_224', 384),
                                        ('deit_base_patch16_224', 768)])
def test_deit_sizes_build_and_run(arch, dims):
    model = ViT(arch=arch, out_indices=(3, 11), cb=True).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 224, 224))
    assert [o.shape for o in outs] == [(1, dims, 14, 14)] * 2
    assert all(torch.isfinite(o).all() for o in outs)


def test_custom_sizes():
    model = ViT(arch=ARCH, embed_dims=64, depth=4, num_heads=2, img_size=64, out_indices=(1, 3))
    assert model.num_layers == 4 and model.embed_dims == 64
    assert [o.shape for o in model(torch.randn(1, 3, 64, 96))] == [(1, 64, 4, 6)] * 2


@pytest.mark.parametrize('kwargs, message', [
    (dict(arch='deit_smal_patch16_224'), r"arch='deit_smal_patch16_224' is not a timm .*"
                                         r"close matches: deit_small_patch16_224"),
    (dict(arch='resnet50'), "arch='resnet50' is not supported"),
    (dict(arch='deit_small_distilled_patch16_224'), 'is not supported'),
    (dict(cb_position='ffn'), r"cb_position='ffn' is not one of 'mlp', 'attn', 'block' "
                              r"\(model.backbone.cb_position"),
    (dict(out_indices=(3, 12)), r'out_indices=\(3, 12\) is out of range: .* 0..11'),
    (dict(cb=True, cb_layers=[-13]), r'cb_layers=\[-13\] is out of range'),
    (dict(img_size=500), r'img_size=500 does not divide by the patch size \(16, 16\)'),
])
def test_bad_config_values_name_the_value_and_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ViT(**{'arch': ARCH, **kwargs})


def test_layer_depths():
    model = ViT(arch=ARCH)
    depth = lambda name: model.get_layer_depth(name, 'backbone.')  # noqa: E731
    assert depth('backbone.cls_token') == (0, 14)
    assert depth('backbone.patch_embed.proj.weight') == (0, 14)
    assert depth('backbone.blocks.0.attn.qkv.weight') == (1, 14)
    assert depth('backbone.blocks.11.cb.strength') == (12, 14)
    assert depth('decode_head.conv_seg.weight') == (13, 14)
