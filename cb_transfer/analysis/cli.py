"""``tools/analyze_attention.py`` / ``cb-attention``: attention statistics of checkpoints or of a
suite's runs, each arm beside its control."""
import argparse
import sys
from pathlib import Path
from typing import List, Optional



def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="Measure how dense a ViT's attention is (the CB paper's normalised entropy, "
        'mean attention distance, query dependence) for every layer and head of checkpoints: '
        'timm/DeiT files, upstream classifiers, downstream mmseg/mmdet models, or the runs of '
        'work dirs (grouped into arms as the result tables group them).')
    parser.add_argument('inputs', nargs='+', help='checkpoint files and/or work dirs')
    parser.add_argument('--images', help='a folder of images (default: the validation split of '
                        "each run's own config)")
    parser.add_argument('--max-images', type=int, default=8, help='images per checkpoint')
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'),
                        help="input size (default: the backbone's training size; for detection "
                        "the test pipeline's resize scale, e.g. 800x1333; any size, the backbone "
                        "pads)")
    parser.add_argument('--arch', help='timm architecture of a bare timm/DeiT file (inferred for '
                        'DeiT-Ti/-S/-B)')
    parser.add_argument('--cb', action='store_true',
                        help='analyse bare timm-layout files as +CB models')
    parser.add_argument('--out', help='output folder (default: <work dir>/attention for one work '
                        'dir, else ./attention)')
    args = parser.parse_args(argv)

    from .report import analyse, write_outputs
    from .sources import NotAViT, subject_from_checkpoint, subjects_from_work_dirs
    try:
        subjects = []
        for item in args.inputs:
            if Path(item).is_dir():
                found, skipped = subjects_from_work_dirs([item])
                for note in skipped:
                    print(f'left out: {note}', file=sys.stderr)
                subjects += found
            else:
                subjects.append(subject_from_checkpoint(item, args.arch,
                                                        True if args.cb else None))
        if not subjects:
            print(f'error: no finished run with a checkpoint under {", ".join(args.inputs)}',
                  file=sys.stderr)
            return 2
        results = analyse(subjects, args.images, args.max_images, args.size)
    except (NotAViT, FileNotFoundError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    single = len(args.inputs) == 1 and Path(args.inputs[0]).is_dir()
    out = Path(args.out or (Path(args.inputs[0]) / 'attention' if single else 'attention'))
    written = write_outputs(results, out)
    print(written['attention.md'].read_text())
    print('written: ' + ', '.join(str(p) for p in written.values()))
    return 0
