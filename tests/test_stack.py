"""The pinned stack imports, and mmcv's compiled ops run on a CPU."""
import importlib.metadata as metadata
import pytest
import torch


@pytest.mark.parametrize('package, version', [
    ('torch', '2.13.0'), ('torchvision', '0.28.0'), ('mmcv', '2.1.0'), ('mmengine', '0.10.7'),
    ('mmdet', '3.3.0'), ('mmsegmentation', '1.2.2'), ('mmpretrain', '1.2.0'),
    ('submitit', '1.5.4')])
def test_pinned_versions(package, version):
    assert metadata.version(package).split('+')[0] == version


def test_stack_imports():
    import mmdet.models  # noqa: F401  (imports mmcv.ops)
    import mmseg.models  # noqa: F401
    import timm
    import torchvision  # noqa: F401  (timm and mmengine's Runner need it to import)

    assert timm.create_model('deit_tiny_patch16_224', pretrained=False) is not None


def test_mmcv_nms_runs_on_cpu():
    from mmcv.ops import nms
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]],
                         dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    # box 3 (0.95) suppresses 0 (IoU 0.90) and 1 (IoU 0.61); box 2 overlaps none
    assert keep.tolist() == [3, 2]
    assert torch.allclose(dets[:, 4], torch.tensor([0.95, 0.7]))


def test_mmcv_roi_align_runs_on_cpu():
    from mmcv.ops import RoIAlign
    # a feature map that is linear in x: bilinear sampling reproduces it exactly
    feat = torch.arange(16, dtype=torch.float32).repeat(16, 1).view(1, 1, 16, 16)
    rois = torch.tensor([[0, 2.0, 3.0, 6.0, 7.0]])  # (batch index, x1, y1, x2, y2)
    out = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=2, aligned=True)(feat, rois)
    # aligned=True shifts the box by half a pixel: x from 1.5 to 5.5, two bins of width 2 with
    # samples at x = 2, 3 and 4, 5, whose means are 2.5 and 4.5
    assert out.shape == (1, 1, 2, 2)
    assert torch.allclose(out[0, 0], torch.tensor([[2.5, 4.5], [2.5, 4.5]]))
