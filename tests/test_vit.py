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
    """The +CB forward written out by hand from timm's block parts (docs/design.md, "The formula").

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
    two = ViT(arch=ARCH, cb=True, cb_scaled=True, cb_layers=[3, 4])
    assert count(two) == count(plain) + 2 * 192


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
    model = ViT(arch=ARCH, cb=True, cb_scaled=True)
    depth = lambda name: model.get_layer_depth(name, 'backbone.')  # noqa: E731
    assert depth('backbone.cls_token') == (0, 14)
    assert depth('backbone.patch_embed.proj.weight') == (0, 14)
    assert depth('backbone.blocks.0.attn.qkv.weight') == (1, 14)
    assert depth('backbone.blocks.11.cb.strength') == (12, 14)
    assert depth('decode_head.conv_seg.weight') == (13, 14)


# ---- any timm change, alone and with CB ---------------------------------------------------------

SMALL = dict(depth=4, img_size=64)
SMALL_INDICES = (1, 3)
CHANGES = {
    'registers': dict(reg_tokens=4),
    'LayerScale': dict(init_values=0.1),
    'QK-norm': dict(qk_norm=True),
    'no position embedding on prefix tokens': dict(no_embed_class=True, reg_tokens=2),
    'pre-norm': dict(pre_norm=True),
    'SwiGLU': dict(mlp_layer='SwiGLUPacked', act_layer='silu'),
    'RMSNorm': dict(norm_layer='rmsnorm'),
    'no class token': dict(class_token=False),
}


def small_timm(change):
    """timm's own model with the change, classifier included (as its checkpoints are)."""
    from cb_transfer.models.vit import check_timm_kwargs
    torch.manual_seed(0)
    pool = {} if change.get('class_token', True) else dict(global_pool='avg')
    model = timm.create_model(ARCH, pretrained=False, dynamic_img_size=True, depth=4,
                              img_size=64, **pool, **check_timm_kwargs(change, 'featmap')).eval()
    with torch.no_grad():  # LayerScale and friends away from their initial values
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def timm_reference(vit, x, layers, indices):
    """timm's block parts written out, CB after the MLP branch of ``layers``; prefix tokens
    (class token, registers) dropped as the backbone drops them."""
    grid = vit.patch_embed.dynamic_feat_size(x.shape[-2:])
    x = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))
    outs = []
    for i, blk in enumerate(vit.blocks):
        x = x + blk.ls1(blk.attn(blk.norm1(x)))
        mlp = blk.ls2(blk.mlp(blk.norm2(x)))
        x = x + (cb_reference(mlp) if i in layers else mlp)
        if i in indices:
            patches = x[:, vit.num_prefix_tokens:]
            outs.append(patches.transpose(1, 2).reshape(x.shape[0], -1, *grid))
    return outs


@pytest.mark.parametrize('cb', [False, True], ids=['alone', 'with CB'])
@pytest.mark.parametrize('name', list(CHANGES))
def test_each_timm_change_loads_timm_weights_strictly_and_gives_timms_features(name, cb, tmp_path):
    change = CHANGES[name]
    reference = small_timm(change)
    path = tmp_path / 'timm.pth'
    torch.save(reference.state_dict(), path)
    model = ViT(arch=ARCH, **SMALL, out_indices=SMALL_INDICES, timm_kwargs=change, cb=cb,
                init_cfg=dict(type='Pretrained', checkpoint=str(path))).eval()
    # timm's key names: the checkpoint's, less the classifier and the final norm
    assert set(model.state_dict()) == set(backbone_state(reference))
    model.init_weights()  # load_pretrained: strict, raises on anything missing
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = model(x)
        # timm's blocks written out (CB added where the arm has it), and without CB timm's own
        # forward_intermediates on timm's own model
        expected = [timm_reference(reference, x, range(4) if cb else (), SMALL_INDICES)]
        if not cb:
            expected.append(reference.forward_intermediates(x, indices=list(SMALL_INDICES),
                                                            intermediates_only=True))
    for reference_outs in expected:
        for a, b in zip(ours, reference_outs, strict=True):
            assert a.shape == (2, 192, 4, 4)
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_a_bare_load_state_dict_resizes_the_position_embedding_with_prefix_tokens():
    """The pre-hook resizes on every load path; registers and no_embed_class keep their rows."""
    change = dict(reg_tokens=2, no_embed_class=True)
    reference = small_timm(change)
    model = ViT(arch=ARCH, depth=4, img_size=96, out_indices=SMALL_INDICES, timm_kwargs=change)
    model.load_state_dict(backbone_state(reference))
    assert model.pos_embed.shape == (1, 6 * 6, 192)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():  # timm resizes the same grid at run time: the same features
        for a, b in zip(model.eval()(x), reference.forward_intermediates(
                x, indices=list(SMALL_INDICES), intermediates_only=True)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('change, dropped', [(dict(init_values=0.1), 'blocks.2.ls1.gamma'),
                                             (dict(reg_tokens=4), 'reg_token')])
def test_a_checkpoint_missing_a_tensor_of_the_change_is_refused_naming_it(change, dropped,
                                                                          tmp_path):
    state = small_timm(change).state_dict()
    del state[dropped]
    torch.save(state, tmp_path / 'partial.pth')
    model = ViT(arch=ARCH, **SMALL, timm_kwargs=change,
                init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'partial.pth')))
    with pytest.raises(RuntimeError, match=rf'missing \(1\): {dropped}'):
        model.init_weights()


@pytest.mark.parametrize('kwargs, message', [
    (dict(timm_kwargs=dict(num_classes=10)), r'timm_kwargs.num_classes=10 is refused: it only '
                                             r'sizes the classifier head'),
    (dict(timm_kwargs=dict(global_pool='avg')), r"timm_kwargs.global_pool='avg' is refused"),
    (dict(timm_kwargs=dict(fc_norm=True)), r'timm_kwargs.fc_norm=True is refused'),
    (dict(timm_kwargs=dict(patch_drop_rate=0.5)), r'timm_kwargs.patch_drop_rate=0.5 is refused: '
                                                  r'dropping patches'),
    (dict(timm_kwargs=dict(class_token=False), out_type='cls_token'),
     r"timm_kwargs.class_token=False is refused with out_type='cls_token'"),
    (dict(timm_kwargs=dict(reg_token=4)), r"timm_kwargs.reg_token=4 is not an argument of timm's "
                                          r'VisionTransformer; close: reg_tokens'),
    (dict(timm_kwargs=dict(embed_dim=64)), r'timm_kwargs.embed_dim=64 is set by cb_transfer.ViT '
                                           r'itself: give embed_dims= instead'),
    (dict(timm_kwargs=dict(mlp_layer='NoSuchMlp')), r"timm_kwargs.mlp_layer='NoSuchMlp' is not a "
                                                    r'class of timm.layers'),
    (dict(timm_kwargs=dict(num_heads=5)), r'timm_kwargs.num_heads=5 is set by cb_transfer.ViT'),
    (dict(timm_kwargs=dict(reg_tokens=2, norm_layer='nosuchnorm')),
     r"timm_kwargs=\{'reg_tokens': 2, 'norm_layer': 'nosuchnorm'\} does not build with "
     rf"arch='{ARCH}': timm says"),
    (dict(timm_kwargs=dict(block_fn='ResPostBlock'), cb=True, cb_position='mlp'),
     r"cb_position='mlp' hooks each block's ls2, which a ResPostBlock does not have"),
])
def test_refused_timm_arguments_name_themselves(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ViT(arch=ARCH, **SMALL, **kwargs)


def test_an_arch_without_a_class_token_cannot_return_one():
    with pytest.raises(ValueError, match=r"out_type='cls_token' needs a class token; "
                                         r"arch='vit_betwixt_patch16_reg4_gap_256' has none"):
        ViT(arch='vit_betwixt_patch16_reg4_gap_256', img_size=64, depth=1, out_type='cls_token')


def test_a_block_class_by_name_is_timms_and_cb_hooks_it():
    """block_fn by name from timm's vision_transformer module: the features are timm's with
    that block; CB at the block's output combines with it."""
    from timm.models.vision_transformer import ResPostBlock
    model = ViT(arch=ARCH, **SMALL, timm_kwargs=dict(block_fn='ResPostBlock')).eval()
    assert all(type(block) is ResPostBlock for block in model.blocks)
    reference = timm.create_model(ARCH, pretrained=False, depth=4, img_size=64, num_classes=0,
                                  block_fn=ResPostBlock).eval()
    reference.load_state_dict(model.state_dict(), strict=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], reference.forward_intermediates(
            x, indices=[3], intermediates_only=True)[0], rtol=1e-5, atol=1e-5)
    cb = ViT(arch=ARCH, **SMALL, cb=True, cb_position='block',
             timm_kwargs=dict(block_fn='ResPostBlock')).eval()
    cb.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(cb(x)[0], model(x)[0])


def test_registers_are_dropped_from_the_class_token_output_too():
    """out_type='cls_token' returns the class token, not a register."""
    model = ViT(arch=ARCH, **SMALL, out_type='cls_token', timm_kwargs=dict(reg_tokens=4)).eval()
    reference = timm.create_model(ARCH, pretrained=False, depth=4, img_size=64, reg_tokens=4,
                                  num_classes=0, global_pool='token').eval()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], reference(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('arch', ['deit3_small_patch16_224', 'vit_small_patch14_reg4_dinov2'])
def test_deit3_and_dinov2_register_checkpoints_load_strictly_at_another_size(arch, tmp_path):
    """A zoo-pair's published files: timm's layout at the arch's own size (DINOv2: 518, a 37x37
    grid, registers without position rows), loaded at another size and giving timm's features
    there."""
    torch.manual_seed(0)
    reference = timm.create_model(arch, pretrained=False, depth=2, dynamic_img_size=True).eval()
    torch.save(reference.state_dict(), tmp_path / 'zoo.pth')
    model = ViT(arch=arch, depth=2, img_size=224, out_indices=(0, 1),
                init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'zoo.pth'))).eval()
    model.init_weights()
    patch = model.patch_embed.patch_size[0]
    assert model.pos_embed.shape[1] == (224 // patch) ** 2 + (0 if model.no_embed_class else 1)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        for a, b in zip(model(x), reference.forward_intermediates(
                x, indices=[0, 1], intermediates_only=True), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_feature_maps_are_contiguous_nchw_as_mmcvs_cpu_roi_align_needs():
    """mmcv's CPU RoIAlign reads its input's memory as contiguous NCHW whatever the strides: a
    channels-last map (what transposing the tokens gives, and what convolutions then keep) gives
    wrong RoI features without a word. Every Mask R-CNN result depends on this."""
    from mmcv.ops import roi_align
    for final_norm in (False, True):  # the final norm works over channels, then back to NCHW
        model = ViT(arch=ARCH, **SMALL, out_indices=SMALL_INDICES, final_norm=final_norm).train()
        outs = model(torch.randn(2, 3, 64, 96))
        assert all(o.is_contiguous() for o in outs), final_norm
    # the trap itself, so that the assertion above keeps its reason
    x = torch.randn(2, 8, 16, 16)
    rois = torch.tensor([[0, 1., 1., 9., 9.], [1, 2., 3., 12., 14.]])
    direct = roi_align(x, rois, (7, 7), 1.0, 2, 'avg', True)
    strided = roi_align(x.contiguous(memory_format=torch.channels_last), rois, (7, 7), 1.0, 2,
                        'avg', True)
    assert not torch.allclose(direct, strided)
