"""tools/benchmark.py at tiny size: the table's structure, and every figure a positive number."""
import json

from cb_transfer.benchmark import VARIANTS, attention_memory, main, peak_train_memory


def test_benchmark_table_at_tiny_size(tmp_path, capsys):
    out = tmp_path / 'bench.json'
    assert main(['--archs', 'deit-ti', '--sizes', '64', '--batch-sizes', '2', '--rounds', '2',
                 '--warmup', '1', '--device', 'cpu', '--json', str(out)]) == 0
    table = capsys.readouterr().out
    header = table.splitlines()[1]
    assert header.startswith('| arch | input | batch | variant | params | FLOPs (counter) | '
                             'CB FLOPs (formula) | fwd ratio [min..max] | fwd+bwd ratio')
    record = json.loads(out.read_text())
    rows = {r['variant']: r for r in record['rows']}
    assert set(rows) == set(VARIANTS)
    for variant, row in rows.items():
        for key in ('params', 'flops_counted', 'forward_s', 'train_s', 'forward_ratio',
                    'train_ratio'):
            assert row[key] > 0, (variant, key, row[key])
        assert all(r > 0 for r in row['forward_ratio_spread'] + row['train_ratio_spread'])
        assert f'| deit-ti | 64x64 | 2 | {variant} |' in table
    assert rows['plain']['forward_ratio'] == rows['plain']['train_ratio'] == 1.0
    # the counter skips CB's element-wise work; the formula counts it: 4 * N * C per layer
    tokens, dims, layers = (64 // 16) ** 2 + 1, 192, 12
    for variant in ('cb-mlp', 'cb-attn', 'cb-block', 'cb-scaled'):
        assert rows[variant]['flops_cb_formula'] == 4 * tokens * dims * layers * 2
        assert rows[variant]['flops_counted'] == rows['plain']['flops_counted']
    assert rows['plain']['flops_cb_formula'] == 0
    # plain CB adds no parameters; the scaled variant one strength per channel and layer
    assert rows['cb-mlp']['params'] == rows['plain']['params']
    assert rows['cb-scaled']['params'] == rows['plain']['params'] + dims * layers
    # identical dimensions: mmseg's ViT has the same weights bar the patch embedding's bias
    assert rows['mmseg']['params'] == rows['plain']['params'] - dims
    assert abs(rows['mmseg']['flops_counted'] / rows['plain']['flops_counted'] - 1) < 0.01


def test_peak_memory_is_measured_in_a_fresh_process():
    """(--memory does this for every variant; here for one, to keep the test short.)"""
    assert peak_train_memory('plain', 'deit-ti', 64, 2, 'cpu') > 0


def test_the_attention_analysis_holds_far_less_than_every_map():
    row = attention_memory('deit-ti', 224, 224, 'cpu', modes=('all-maps', 'streamed'))
    tokens = 14 * 14 + 1
    assert row['tokens'] == tokens
    assert row['all_maps_formula_mb'] == 12 * 3 * tokens ** 2 * 4 / 2 ** 20
    assert row['all_maps_peak_mb'] >= 0.9 * row['all_maps_formula_mb']
    assert row['streamed_peak_mb'] < row['all_maps_peak_mb']
