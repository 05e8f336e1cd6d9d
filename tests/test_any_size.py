"""Inputs of any size, as the real data sets have them (ADE20K's 683x512, 500x364, ...): the
backbone pads like mmseg's ViT, and every consumer of it (a training step, whole-image and slide
inference, the attention analysis, the robustness stage) takes odd sizes, checked against mmseg's
own ``VisionTransformer`` with the same weights where mmseg has the option."""
import importlib.util
from pathlib import Path

import mmseg
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import REPO
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmseg.models.backbones import VisionTransformer
from timm.layers import resample_abs_pos_embed

from cb_transfer.analysis.attention import AttentionRecorder
from cb_transfer.models import ViT

_spec = importlib.util.spec_from_file_location(  # mmseg's own timm-to-mmseg key converter
    'vit2mmseg', Path(mmseg.__file__).parent / '.mim/tools/model_converters/vit2mmseg.py')
vit2mmseg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vit2mmseg)

SMOKE_SEG = REPO / 'configs' / 'smoke' / 'upernet_vit-tiny-p8_1xb4-240iter_smoke-ade20k-64x64.py'


def pad(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Zeros at the bottom and right up to whole patches: mmseg's ``padding='corner'``."""
    return F.pad(x, (0, -x.shape[-1] % patch, 0, -x.shape[-2] % patch))


def mmseg_vit(ours: ViT) -> VisionTransformer:
    """mmseg's ViT at our dimensions, with our weights through mmseg's converter."""
    theirs = VisionTransformer(
        img_size=tuple(ours.patch_embed.img_size), patch_size=ours.patch_embed.patch_size[0],
        embed_dims=ours.embed_dims, num_layers=ours.num_layers,
        num_heads=ours.blocks[0].attn.num_heads, out_indices=ours.out_indices,
        final_norm=ours.final_norm, norm_cfg=dict(type='LN', eps=1e-6), patch_bias=True,
        interpolate_mode='bicubic')
    theirs.load_state_dict(vit2mmseg.convert_vit(ours.state_dict()), strict=True)
    theirs.eval()
    return theirs


@pytest.fixture
def timm_resampling(monkeypatch):
    """mmseg's ViT resampling its position embedding as timm does (antialiased bicubic; mmseg's
    own is torch's plain bicubic): with it, any remaining difference would be the padding's."""
    def resize(pos_embed, input_shape, pos_shape, mode):
        return resample_abs_pos_embed(pos_embed, new_size=input_shape, old_size=pos_shape,
                                      num_prefix_tokens=1)
    monkeypatch.setattr(VisionTransformer, 'resize_pos_embed', staticmethod(resize))


@pytest.mark.parametrize('patch', [8, 14, 16])
def test_odd_sizes_give_mmseg_vit_outputs_on_the_padded_input(patch, timm_resampling):
    torch.manual_seed(0)
    ours = ViT(arch='deit_tiny_patch16_224', patch_size=patch, img_size=(4 * patch, 6 * patch),
               depth=3, out_indices=(0, 2), final_norm=True).eval()
    theirs = mmseg_vit(ours)
    # the training grid (4x6) after padding, and two other grids (resampled position embedding)
    for height, width in ((4 * patch - 3, 6 * patch - 1), (3 * patch + 1, 5 * patch + 2),
                          (7 * patch + 3, 9 * patch + 5)):
        x = torch.randn(2, 3, height, width)
        with torch.no_grad():
            outs, padded, reference = ours(x), ours(pad(x, patch)), theirs(x)
        grid = (-(-height // patch), -(-width // patch))
        for a, b, c in zip(outs, padded, reference):
            assert a.shape == (2, 192, *grid)
            torch.testing.assert_close(a, b, rtol=0, atol=0)   # the padding is zeros, bottom-right
            torch.testing.assert_close(a, c, rtol=1e-5, atol=2e-5)  # and it is mmseg's


def test_the_resampling_is_the_only_difference_from_mmseg_at_another_grid():
    """Without the patch above: at the training grid the outputs are mmseg's; at another grid
    they differ by the two bicubic kernels only (a few per cent of the features' size)."""
    torch.manual_seed(0)
    ours = ViT(arch='deit_tiny_patch16_224', img_size=(64, 96), depth=2, out_indices=(1,)).eval()
    theirs = mmseg_vit(ours)
    with torch.no_grad():
        same = torch.randn(1, 3, 61, 95)
        torch.testing.assert_close(ours(same)[0], theirs(same)[0], rtol=1e-5, atol=2e-5)
        other = torch.randn(1, 3, 115, 149)
        difference = (ours(other)[0] - theirs(other)[0]).abs().max() / ours(other)[0].abs().mean()
    assert 1e-4 < difference < 0.1


@pytest.mark.parametrize('change', [dict(reg_tokens=4), dict(no_embed_class=True, reg_tokens=2),
                                    dict(class_token=False, global_pool='avg'),
                                    dict(init_values=0.1, qk_norm=True)],
                         ids=['registers', 'no_embed_class', 'no class token', 'ls+qknorm'])
@pytest.mark.parametrize('patch', [8, 14, 16])
def test_every_backbone_option_takes_any_size(change, patch):
    change = {k: v for k, v in change.items() if k != 'global_pool'}
    model = ViT(arch='deit_tiny_patch16_224', patch_size=patch, depth=2, img_size=4 * patch,
                out_indices=(0, 1), cb=True, timm_kwargs=change).eval()
    x = torch.randn(1, 3, 5 * patch + 3, 3 * patch - 5)  # portrait, neither side whole patches
    with torch.no_grad():
        outs, padded = model(x), model(pad(x, patch))
    for a, b in zip(outs, padded):
        assert a.shape == (1, 192, 6, 3)
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# ---- the consumers: a segmentor's training step, whole and slide inference, attention, robustness

def segmentor(mode: str = 'whole'):
    """The smoke UPerNet (8x8 patches, trained at 64x64); BatchNorm for SyncBN, no dropout (so
    that two can be compared)."""
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(SMOKE_SEG))
    cfg.model.decode_head.dropout_ratio = 0.0
    cfg.model.auxiliary_head.dropout_ratio = 0.0
    cfg.model.test_cfg = dict(mode='slide', crop_size=(64, 64), stride=(42, 42)) \
        if mode == 'slide' else dict(mode='whole')
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.init_weights()
    return model


def twins(mode: str = 'whole'):
    """The segmentor, and a copy of it whose backbone is mmseg's ViT with the same weights."""
    ours = segmentor(mode)
    theirs = segmentor(mode)
    theirs.load_state_dict(ours.state_dict())
    theirs.backbone = mmseg_vit(ours.backbone)
    return ours, theirs


def metas(height: int, width: int) -> list:
    shape = (height, width)
    return [dict(img_shape=shape, ori_shape=shape, pad_shape=shape, padding_size=[0, 0, 0, 0])]


def test_a_training_step_on_an_odd_size_equals_mmseg_vit_and_reaches_the_backbone():
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData
    ours, theirs = twins()
    x = torch.randn(2, 3, 61, 59)   # 8x8 patches after padding: the training grid
    samples = []
    for i in range(2):
        sample = SegDataSample(metainfo=metas(61, 59)[0])
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 6, (1, 61, 59), generator=torch.
                                                         Generator().manual_seed(i)))
        samples.append(sample)
    losses = []
    for model in (ours, theirs):
        model.train()
        loss = sum(v for k, v in model.loss(x, samples).items() if 'loss' in k)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-5)
    assert ours.backbone.patch_embed.proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('mode, size', [('whole', (61, 59)), ('whole', (45, 83)),
                                        ('slide', (61, 100)), ('slide', (75, 131))])
def test_inference_on_odd_sizes_equals_mmseg_vit(mode, size, timm_resampling):
    ours, theirs = twins(mode)
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        logits = [m.eval().inference(x, metas(*size)) for m in (ours, theirs)]
    assert logits[0].shape == (1, 150, *size)
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-4, atol=1e-4)


def test_the_attention_analysis_reads_odd_sizes_on_the_grid_the_model_makes():
    """An odd-size image is analysed as the model sees it: the statistics of the padded image."""
    model = ViT(arch='deit_tiny_patch16_224', depth=2, img_size=64,
                timm_kwargs=dict(reg_tokens=2)).eval()
    image = torch.randn(1, 3, 50, 73)
    stats = []
    for x in (image, pad(image, 16)):
        recorder = AttentionRecorder(model)
        with recorder.recording():
            recorder(x)
        stats.append(recorder.stats.means())
        assert recorder.grid == (4, 5)
    assert stats[0] == stats[1]
    assert all(np.isfinite(v).all() for v in stats[0].values())


def test_the_robustness_stage_corrupts_and_segments_an_odd_size_image(tmp_path):
    from mmcv.transforms import Compose
    from mmengine.dataset import pseudo_collate

    from cb_transfer.data import make_ade20k
    from cb_transfer.robustness.evaluate import corrupted_pipeline
    root = make_ade20k(tmp_path / 'ade', num_train=0, num_val=2, size=64)
    cfg = Config.fromfile(str(SMOKE_SEG))
    model = segmentor().eval()
    for index in (0, 1):  # landscape, then portrait (grayscale)
        name = f'ADE_validation_{index:08d}'
        results = dict(img_path=str(root / 'images' / 'validation' / f'{name}.jpg'),
                       seg_map_path=str(root / 'annotations' / 'validation' / f'{name}.png'),
                       reduce_zero_label=True, seg_fields=[])
        for corruption, severity in (('clean', 0), ('impulse_noise', 3), ('glass_blur', 2)):
            data = Compose(corrupted_pipeline(cfg.test_pipeline, corruption, severity))(
                dict(results))
            height, width = data['data_samples'].ori_shape
            assert height % 8 and width % 8 and (height > width) == bool(index)
            with torch.no_grad():
                (prediction,) = model.test_step(pseudo_collate([data]))
            assert prediction.pred_sem_seg.data.shape == (1, height, width)
