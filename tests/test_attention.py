"""The attention analysis: its statistics on hand-built maps, streamed statistics against full maps
taken by timm's AttentionExtract, real checkpoints of every kind, and clear errors."""
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import timm
from timm.utils import AttentionExtract

from cb_transfer.analysis import AttentionRecorder, map_statistics, patch_distances
from cb_transfer.analysis.cli import main as attention_main
from cb_transfer.analysis.report import summary_markdown
from cb_transfer.analysis.sources import subject_from_checkpoint
from cb_transfer.models import ViT


def stats_of(attn, grid, patch=16):
    out = map_statistics(torch.as_tensor(attn, dtype=torch.float64)[None],
                         patch_distances(grid, (patch, patch)))
    return {k: float(v[0]) for k, v in out.items()}


def test_uniform_attention_has_entropy_one_and_no_query_dependence():
    n = 1 + 2 * 2
    s = stats_of(np.full((n, n), 1 / n), (2, 2))
    assert s['entropy'] == pytest.approx(1.0) and s['gap'] == pytest.approx(0.0, abs=1e-12)
    assert s['nmi'] == pytest.approx(0.0, abs=1e-12)
    # uniform over a 2x2 grid of 16-pixel patches: each patch is 0, 16, 16 and 16*sqrt(2) away
    assert s['distance'] == pytest.approx((0 + 16 + 16 + 16 * math.sqrt(2)) / 4)


def test_one_hot_attention_has_entropy_zero():
    n = 1 + 2 * 2
    own = stats_of(np.eye(n), (2, 2))  # every query on itself: fully query-dependent
    assert own['entropy'] == pytest.approx(0.0) and own['gap'] == pytest.approx(math.log(n))
    assert own['nmi'] == pytest.approx(1.0) and own['distance'] == pytest.approx(0.0)
    same = np.zeros((n, n))
    same[:, 0] = 1  # every query on the class token: one-hot, but the same for all queries
    s = stats_of(same, (2, 2))
    assert s['entropy'] == pytest.approx(0.0) and s['nmi'] == pytest.approx(0.0)


def test_distances_by_hand_on_a_small_grid():
    """A 1x3 row of 16-pixel patches: query 0 looks at patch 2 (32 px away), query 1 at patch 0
    (16 px), query 2 at itself; the class token's row and column are left out."""
    attn = np.zeros((4, 4))
    attn[0, 0] = 1
    attn[1, 3], attn[2, 1], attn[3, 3] = 1, 1, 1
    assert stats_of(attn, (1, 3))['distance'] == pytest.approx((32 + 16 + 0) / 3)
    # half on the class token, half on a patch: renormalised over the patches
    attn[1] = [0.5, 0, 0.5, 0]
    assert stats_of(attn, (1, 3))['distance'] == pytest.approx((16 + 16 + 0) / 3)


def brute_force(maps: np.ndarray, grid, patch, prefix=1) -> dict:
    """The statistics of full maps (images, heads, N, N) whose first ``prefix`` tokens are not
    patches, written out with numpy."""
    logs = np.where(maps > 0, np.log(np.where(maps > 0, maps, 1)), 0)
    row_entropy = -(maps * logs).sum(-1)                        # (B, H, N)
    n = maps.shape[-1]
    marginal = maps.mean(2)
    marginal_entropy = -(marginal * np.where(marginal > 0, np.log(marginal), 0)).sum(-1)
    centres = np.array([(i * patch, j * patch) for i in range(grid[0]) for j in range(grid[1])])
    distances = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    patches = maps[..., prefix:, prefix:]
    patches = patches / patches.sum(-1, keepdims=True)
    return dict(entropy=(row_entropy.mean(-1) / np.log(n)).mean(0),
                gap=(np.log(n) - row_entropy.mean(-1)).mean(0),
                distance=(patches * distances).sum(-1).mean(-1).mean(0),
                nmi=((marginal_entropy - row_entropy.mean(-1)) / marginal_entropy).mean(0))


@pytest.mark.parametrize('cb, change, prefix', [(False, {}, 1), (True, {}, 1),
                                               (True, dict(reg_tokens=4), 5),
                                               (False, dict(class_token=False), 0)],
                         ids=['plain', '+CB', '+CB+reg4', 'no class token'])
def test_streamed_statistics_equal_the_brute_force_ones_layer_by_layer(cb, change, prefix):
    torch.manual_seed(0)
    model = ViT(arch='deit_tiny_patch16_224', depth=3, img_size=64, cb=cb,
                cb_position='attn', timm_kwargs=change).eval()
    images = torch.randn(3, 3, 64, 80)  # a 4x5 grid: 20 patches and the prefix tokens
    recorder = AttentionRecorder(model)
    assert recorder.prefix == prefix   # counted from the model, not assumed
    with recorder.recording():
        for image in images:
            recorder(image[None])
    assert all(a.fused_attn for a in recorder.attentions)  # switched back on afterwards
    streamed = recorder.stats.means()

    for block in model.blocks:
        block.attn.fused_attn = False
    with torch.no_grad():
        maps = AttentionExtract(model, method='hook')(images)
    assert sorted(maps) == [f'blocks.{i}.attn.attn_drop' for i in range(3)]
    for layer in range(3):
        full = maps[f'blocks.{layer}.attn.attn_drop'].double().numpy()
        assert full.shape == (3, 3, 20 + prefix, 20 + prefix)
        expected = brute_force(full, (4, 5), 16, prefix)
        for name in ('entropy', 'gap', 'distance', 'nmi'):
            np.testing.assert_allclose(streamed[name][layer], expected[name], rtol=1e-9,
                                       err_msg=f'{name}, layer {layer}')


def test_attention_that_is_not_one_softmax_is_refused_naming_its_class():
    model = ViT(arch='deit_tiny_patch16_224', depth=2, img_size=64,
                timm_kwargs=dict(attn_layer='diff'))
    with pytest.raises(TypeError, match='DiffAttention attention is not one softmax map'):
        AttentionRecorder(model)


def test_the_main_job_measured_every_arm_it_trained(local_suite):
    """Upstream classifiers and downstream mmseg and mmdet models, plain and +CB."""
    results = json.loads((local_suite.work_dir / 'attention' / 'attention.json').read_text())
    entries = results['checkpoints']
    assert len(entries) == 12
    assert {(e['task'], e['arm'], e['pair']) for e in entries} == {
        (t, a, p) for t in ('classification', 'segmentation', 'detection')
        for a in ('plain', '+CB(mlp)') for p in (0, 1)}
    for entry in entries:
        assert entry['images'] == 8 and len(entry['layers']) == 4
        values = [v for layer in entry['layers'] for s in layer.values() for v in s]
        assert len(values) == 4 * 4 * 3 and all(math.isfinite(v) for v in values)
        assert all(0 <= v <= 1 for layer in entry['layers'] for v in layer['entropy'])
    detection = next(e for e in entries if e['task'] == 'detection')
    assert detection['size'] == [128, 128] and detection['tokens'] == 1 + 16 * 16
    assert detection['prefix_tokens'] == 1
    report = (local_suite.work_dir / 'report.md').read_text()
    assert '## Attention' in report and "the paper's measure" in report
    # averaged over each pair's seeds, then mean ± std over the pairs
    assert 'plain: 2 checkpoints of 2 pairs; +CB(mlp): 2 checkpoints of 2 pairs' in report

    assert (local_suite.work_dir / 'attention' / 'attention.png').read_bytes()[:4] == b'\x89PNG'


def test_the_tool_reads_a_downstream_checkpoint_and_names_bad_inputs(local_suite, tmp_path,
                                                                     monkeypatch, capsys):
    monkeypatch.chdir(local_suite.cwd)

    def run_tool(*args):
        code = attention_main([str(a) for a in args])
        captured = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)

    det = next(local_suite.work_dir.glob('two-stage/mask-rcnn*-cb_*/pair0/seed0'))
    checkpoint = (det / 'last_checkpoint').read_text().strip()
    images = tmp_path / 'images'
    images.mkdir()
    for i, source in enumerate(sorted((local_suite.cwd / 'data/smoke/coco/val2017').glob('*'))[:2]):
        (images / f'{i}.jpg').write_bytes(source.read_bytes())
    proc = run_tool(checkpoint, '--images', images, '--out', tmp_path / 'out')
    assert proc.returncode == 0, proc.stderr[-3000:]
    (entry,) = json.loads((tmp_path / 'out' / 'attention.json').read_text())['checkpoints']
    assert entry['cb'] is True and entry['images'] == 2 and entry['task'] == 'detection'

    torch.save(torch.nn.Conv2d(3, 8, 3).state_dict(), tmp_path / 'resnet.pth')
    proc = run_tool(tmp_path / 'resnet.pth', '--images', images)
    assert proc.returncode == 2
    assert f"'{tmp_path / 'resnet.pth'}' is not a ViT checkpoint" in proc.stderr

    (images / 'broken.jpg').write_bytes(b'not a jpeg')
    proc = run_tool(checkpoint, '--images', images)
    assert proc.returncode == 2
    assert f"cannot read image '{images / 'broken.jpg'}'" in proc.stderr


def test_the_summary_averages_each_pairs_seeds_then_takes_the_spread_over_pairs():
    def entry(arm, pair, seed, entropy):
        return dict(experiment='seg', task='segmentation', arm=arm, pair=pair, seed=seed,
                    images=8, size=[64, 64], tokens=65, uniform_distance=33.1,
                    layers=[dict(entropy=[entropy, entropy], gap=[0.0, 0.0],
                                 distance=[1.0, 1.0], nmi=[0.0, 0.0])])
    plain = [entry('plain', 0, 0, 0.90), entry('plain', 0, 1, 0.80),   # pair means 0.85, 0.95
             entry('plain', 1, 0, 0.96), entry('plain', 1, 1, 0.94)]
    cb = [entry('+CB(mlp)', 0, 0, 0.5)]
    text = summary_markdown(dict(definitions={}, checkpoints=plain + cb))
    assert 'plain: 4 checkpoints of 2 pairs; +CB(mlp): 1 checkpoint of 1 pair' in text
    row = next(line for line in text.splitlines() if line.startswith('| 0 |'))
    expected = f'{np.mean([0.85, 0.95]):.3f} ± {np.std([0.85, 0.95], ddof=1):.3f}'
    assert row.split(' | ')[1] == expected and row.split(' | ')[2] == '0.500'


@pytest.mark.parametrize('arch, size', [('deit_tiny_patch16_224', 224),
                                        ('deit3_small_patch16_224', 224),  # no class row
                                        ('vit_small_patch14_reg4_dinov2', 518)])  # no reg rows
def test_a_bare_timm_file_is_read_at_its_own_grid(arch, size, tmp_path):
    """The grid of a timm file comes from its position rows and its prefix tokens as that arch
    lays them out (class token with or without a row, registers without), not from a fixed
    class row."""
    torch.save(timm.create_model(arch, pretrained=False, depth=1).state_dict(),
               tmp_path / 'zoo.pth')
    subject = subject_from_checkpoint(str(tmp_path / 'zoo.pth'), arch=arch)
    assert subject.backbone['img_size'] == size
