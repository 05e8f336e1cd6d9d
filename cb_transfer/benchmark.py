"""What CB costs, and how cb_transfer.ViT compares with mmseg's VisionTransformer.

For each architecture, input size and batch size the variants (plain, +CB at each placement, +CB
scaled, plain with activation checkpointing, mmseg's VisionTransformer at identical dimensions)
are timed interleaved in one process, round after round, so that the machine's noise hits them
alike; each figure is the median over rounds of the variant's time divided by plain's time *in the
same round*, with the spread (min..max) of those ratios. FLOPs come from mmengine's complexity
analysis, which counts matrix products and skips element-wise operations, so CB's own count from
its formula stands beside it. Peak training memory is measured per variant in a fresh process
(the rise of its peak resident memory over one forward+backward on a CPU; the CUDA allocator's
peak on a GPU).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, List, Optional, Sequence

import torch

ARCHS = {'deit-ti': 'deit_tiny_patch16_224', 'deit-s': 'deit_small_patch16_224',
         'deit-b': 'deit_base_patch16_224'}
VARIANTS = ('plain', 'cb-mlp', 'cb-attn', 'cb-block', 'cb-scaled', 'plain-cp', 'mmseg')
OUT_INDICES = (2, 5, 8, 11)


def build(variant: str, arch: str, size: int) -> torch.nn.Module:
    """The backbone a variant names, at ``arch``'s dimensions for ``size`` x ``size`` inputs."""
    from .models import ViT
    if variant == 'mmseg':
        from mmseg.models.backbones import VisionTransformer
        ref = ViT(arch=ARCHS[arch], img_size=size)
        heads = ref.blocks[0].attn.num_heads
        return VisionTransformer(img_size=size, patch_size=16, embed_dims=ref.embed_dims,
                                 num_layers=ref.num_layers, num_heads=heads,
                                 out_indices=OUT_INDICES, norm_cfg=dict(type='LN', eps=1e-6),
                                 interpolate_mode='bicubic')
    kwargs = dict(arch=ARCHS[arch], img_size=size, out_indices=OUT_INDICES)
    if variant.startswith('cb-'):
        position = variant[3:]
        kwargs.update(cb=True, cb_scaled=position == 'scaled',
                      cb_position='mlp' if position == 'scaled' else position)
    if variant == 'plain-cp':
        kwargs['with_cp'] = True
    return ViT(**kwargs)


def cb_formula_flops(model: torch.nn.Module, batch: int, size: int) -> int:
    """Element-wise operations CB adds: per CB layer a token mean (N*C adds) and one mix
    (a subtract, a multiply and an add per element: 3*N*C), for each image."""
    if not getattr(model, 'cb', False):
        return 0
    tokens = (size // 16) ** 2 + 1
    return 4 * tokens * model.embed_dims * len(model.cb_layers) * batch


def _sdpa_flop_handle(inputs, outputs) -> int:
    """Multiply-adds of fused attention, which mmengine's counter has no handle for (it would
    skip timm's attention and count mmseg's explicit matrix products): Q K^T and A V."""
    from mmengine.analysis.jit_handles import get_shape
    *batch, tokens, dims = get_shape(inputs[0])
    keys = get_shape(inputs[1])[-2]
    heads = 1
    for b in batch:
        heads *= b
    return 2 * heads * tokens * keys * dims


def counted_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """mmengine's FLOP count (multiply-adds of matrix products and convolutions)."""
    from mmengine.analysis import FlopAnalyzer
    model.eval()
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, (x,)).set_op_handle(
            'aten::scaled_dot_product_attention', _sdpa_flop_handle)
        return int(analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
                   .total())


def _timer(device) -> Callable[[Callable], float]:
    def run(fn) -> float:
        if device.type == 'cuda':
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1000
        begin = time.perf_counter()
        fn()
        return time.perf_counter() - begin
    return run


def _steps(model, x, device, amp: bool):
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)

    def forward():
        model.eval()
        with torch.no_grad(), autocast:
            model(x)

    def train_step():
        model.train()
        model.zero_grad(set_to_none=True)
        with autocast:
            loss = sum(o.float().square().mean() for o in model(x))
        loss.backward()

    return forward, train_step


@dataclass
class Row:
    arch: str
    size: int
    batch: int
    variant: str
    params: int
    flops_counted: Optional[int]
    flops_cb_formula: int
    forward_s: float
    train_s: float
    forward_ratio: float
    forward_ratio_spread: List[float]
    train_ratio: float
    train_ratio_spread: List[float]
    peak_train_memory_mb: Optional[float] = None
    notes: List[str] = field(default_factory=list)


def measure(arch: str, size: int, batch: int, variants, rounds: int, warmup: int,
            device: torch.device, amp: bool, flops: bool) -> List[Row]:
    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size, device=device)
    models = {v: build(v, arch, size).to(device) for v in variants}
    timer = _timer(device)
    steps = {v: _steps(m, x, device, amp) for v, m in models.items()}
    for _ in range(warmup):
        for forward, train_step in steps.values():
            forward()
            train_step()
    times = {v: ([], []) for v in variants}
    order = list(variants)
    for r in range(rounds):
        # interleaved: every variant once per round, starting each round at the next variant,
        # so that no variant always runs after the same one (or first)
        for v in order[r % len(order):] + order[:r % len(order)]:
            forward, train_step = steps[v]
            times[v][0].append(timer(forward))
            times[v][1].append(timer(train_step))
    rows = []
    for v, model in models.items():
        ratios = [[t / p for t, p in zip(times[v][k], times['plain'][k])] for k in (0, 1)]
        rows.append(Row(
            arch=arch, size=size, batch=batch, variant=v,
            params=sum(p.numel() for p in model.parameters()),
            flops_counted=counted_flops(model, x) if flops else None,
            flops_cb_formula=cb_formula_flops(model, batch, size),
            forward_s=statistics.median(times[v][0]), train_s=statistics.median(times[v][1]),
            forward_ratio=statistics.median(ratios[0]),
            forward_ratio_spread=[min(ratios[0]), max(ratios[0])],
            train_ratio=statistics.median(ratios[1]),
            train_ratio_spread=[min(ratios[1]), max(ratios[1])]))
    return rows


def peak_train_memory(variant: str, arch: str, size: int, batch: int, device: str) -> float:
    """MB: how far one forward+backward raises memory above what the model and input hold,
    measured in a fresh process (CPU: resident memory sampled every millisecond; CUDA: the
    allocator's peak)."""
    out = subprocess.run([sys.executable, '-m', 'cb_transfer.benchmark', '--peak-memory-of',
                          variant, arch, str(size), str(batch), device],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _resident_bytes() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def _peak_rise(fn, device: torch.device) -> float:
    """MB by which running ``fn`` raises memory above what is held when it starts (CPU: resident
    memory sampled every millisecond; CUDA: the allocator's peak)."""
    if device.type == 'cuda':
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    base, peak, running = _resident_bytes(), [0], [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], _resident_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    fn()
    running[0] = False
    sampler.join()
    return (peak[0] - base) / 2 ** 20


def _peak_of_one_train_step(variant: str, arch: str, size: int, batch: int, device: str) -> float:
    device = torch.device(device)
    model = build(variant, arch, size).to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    _, train_step = _steps(model, x, device, False)
    return _peak_rise(train_step, device)


ATTENTION_MODES = ('forward', 'all-maps', 'streamed')


def _peak_of_attention(mode: str, arch: str, height: int, width: int, device: str) -> float:
    """One image through the backbone with the explicit attention path: ``forward`` alone,
    ``all-maps`` holding every layer's maps (timm's AttentionExtract), or ``streamed`` reducing
    each map at once (cb_transfer.analysis)."""
    from timm.utils import AttentionExtract

    from .analysis import AttentionRecorder
    device = torch.device(device)
    model = build('plain', arch, max(height, width)).to(device).eval()
    for block in model.blocks:
        block.attn.fused_attn = False
    x = torch.randn(1, 3, height, width, device=device)
    if mode == 'streamed':
        recorder = AttentionRecorder(model)
        recorder._distances_for((height // 16, width // 16))  # its fixed cost, held beforehand

        def run():
            with recorder.recording():
                recorder(x)
    elif mode == 'all-maps':
        extract = AttentionExtract(model, method='hook')

        def run():
            with torch.no_grad():
                return extract(x)  # every layer's maps, alive until the forward returns
    else:
        def run():
            with torch.no_grad():
                model(x)
    return _peak_rise(run, device)


def attention_memory(arch: str, height: int, width: int, device: str,
                     modes: Sequence[str] = ATTENTION_MODES) -> dict:
    """Peak memory of the attention analysis against holding every layer's maps, each measured
    in a fresh process, and the maps' size by formula."""
    ref = build('plain', arch, max(height, width))
    tokens = (height // 16) * (width // 16) + 1
    heads = ref.blocks[0].attn.num_heads
    measured = {}
    for mode in modes:
        out = subprocess.run([sys.executable, '-m', 'cb_transfer.benchmark',
                              '--peak-attention-memory-of', mode, arch, str(height), str(width),
                              device], capture_output=True, text=True, check=True)
        measured[mode] = float(out.stdout.strip().splitlines()[-1])
    return dict(arch=arch, input=f'{height}x{width}', tokens=tokens,
                all_maps_formula_mb=ref.num_layers * heads * tokens ** 2 * 4 / 2 ** 20,
                **{f'{m.replace("-", "_")}_peak_mb': v for m, v in measured.items()})


def to_markdown(rows: List[Row], device: str) -> str:
    absolute = device == 'cuda'
    head = ['arch', 'input', 'batch', 'variant', 'params', 'FLOPs (counter)',
            'CB FLOPs (formula)', 'fwd ratio [min..max]', 'fwd+bwd ratio [min..max]',
            'peak train mem (MB)']
    if absolute:
        head[7:7] = ['fwd (ms)', 'fwd+bwd (ms)']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        cells = [r.arch, f'{r.size}x{r.size}', str(r.batch), r.variant, f'{r.params / 1e6:.2f}M',
                 '' if r.flops_counted is None else f'{r.flops_counted / 1e9:.2f}G',
                 f'{r.flops_cb_formula / 1e6:.2f}M' if r.flops_cb_formula else '0',
                 f'{r.forward_ratio:.3f} [{r.forward_ratio_spread[0]:.3f}..'
                 f'{r.forward_ratio_spread[1]:.3f}]',
                 f'{r.train_ratio:.3f} [{r.train_ratio_spread[0]:.3f}..'
                 f'{r.train_ratio_spread[1]:.3f}]',
                 '' if r.peak_train_memory_mb is None else f'{r.peak_train_memory_mb:.0f}']
        if absolute:
            cells[7:7] = [f'{r.forward_s * 1e3:.1f}', f'{r.train_s * 1e3:.1f}']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--archs', nargs='+', default=['deit-s'], choices=sorted(ARCHS))
    parser.add_argument('--sizes', nargs='+', type=int, default=[512])
    parser.add_argument('--batch-sizes', nargs='+', type=int, default=[2])
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument('--rounds', type=int, default=7, help='timed rounds (median of these)')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--memory', action='store_true',
                        help='also measure peak training memory (one fresh process per variant)')
    parser.add_argument('--no-flops', action='store_true', help='skip the FLOP counter')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--json', help='write the rows here as JSON')
    parser.add_argument('--attention-memory', nargs='+', metavar='HxW',
                        help='instead: peak memory of the attention analysis at these input '
                        'sizes (e.g. 512x512 800x1328) against holding every layer\'s maps')
    args = parser.parse_args(argv)
    if args.attention_memory:
        return _attention_memory_table(args)
    if 'plain' not in args.variants:
        args.variants.insert(0, 'plain')
    device = torch.device(args.device)
    amp = device.type == 'cuda'
    print(f'# cb_transfer benchmark: {platform.processor() or platform.machine()}, '
          f'{torch.get_num_threads()} threads, torch {torch.__version__}, device {device}'
          f'{", bf16 autocast" if amp else ""}; ratios against plain, median of {args.rounds} '
          f'interleaved rounds', flush=True)
    rows = []
    for arch in args.archs:
        for size in args.sizes:
            for batch in args.batch_sizes:
                found = measure(arch, size, batch, args.variants, args.rounds, args.warmup,
                                device, amp, not args.no_flops)
                if args.memory:
                    for row in found:
                        row.peak_train_memory_mb = peak_train_memory(row.variant, arch, size,
                                                                     batch, args.device)
                rows += found
                print(to_markdown(found, device.type), flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(device=str(device), threads=torch.get_num_threads(),
                           torch=torch.__version__, rows=[asdict(r) for r in rows]), f, indent=2)
    return 0


def _attention_memory_table(args) -> int:
    print('| arch | input | tokens | all maps by formula (MB) | peak: all maps held (MB) | '
          'peak: streamed analysis (MB) | peak: forward alone (MB) |\n'
          '|---|---|---|---|---|---|---|', flush=True)
    rows = []
    for arch in args.archs:
        for size in args.attention_memory:
            height, width = map(int, size.lower().split('x'))
            row = attention_memory(arch, height, width, args.device)
            rows.append(row)
            print(f"| {row['arch']} | {row['input']} | {row['tokens']} | "
                  f"{row['all_maps_formula_mb']:.0f} | {row['all_maps_peak_mb']:.0f} | "
                  f"{row['streamed_peak_mb']:.0f} | {row['forward_peak_mb']:.0f} |", flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(device=args.device, threads=torch.get_num_threads(),
                           torch=torch.__version__, attention_memory=rows), f, indent=2)
    return 0


if __name__ == '__main__' and sys.argv[1:2] == ['--peak-memory-of']:
    variant, arch, size, batch, device = sys.argv[2:7]
    print(_peak_of_one_train_step(variant, arch, int(size), int(batch), device))
if __name__ == '__main__' and sys.argv[1:2] == ['--peak-attention-memory-of']:
    mode, arch, height, width, device = sys.argv[2:7]
    print(_peak_of_attention(mode, arch, int(height), int(width), device))
