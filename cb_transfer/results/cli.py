"""``tools/results_table.py`` / ``cb-tabulate``: the table of each arm's gains over its control
from work_dirs."""
import argparse
import sys
from typing import List, Optional

from .plot import plot_table
from .runs import collect_runs
from .table import FORMATS, build_table


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description='Tabulate the gains of +CB over plain backbones from mmengine work_dirs '
        '(and mmseg 0.x / mmdet 2.x *.log.json files).')
    parser.add_argument('dirs', nargs='+', help='directories to search for runs')
    parser.add_argument('--metric', nargs='+', help='metrics to report (default: mIoU for '
                        'segmentation, coco/bbox_mAP and coco/segm_mAP for detection)')
    parser.add_argument('--best', action='store_true',
                        help='the best evaluation of each run instead of the last')
    parser.add_argument('--format', choices=sorted(FORMATS), default='markdown')
    parser.add_argument('--reference', action='store_true',
                        help='add the public reference number of the plain arm, where known')
    parser.add_argument('--plot', metavar='FILE.png', help='draw the gains with their intervals')
    parser.add_argument('--curves', action='store_true',
                        help='with --plot: also the metric curves of both arms')
    parser.add_argument('--output', '-o', help='write the table here instead of stdout')
    args = parser.parse_args(argv)

    runs, problems = collect_runs(args.dirs)
    table = build_table(runs, problems, metrics=args.metric, best=args.best)
    formatter = FORMATS[args.format]
    text = formatter(table, reference=args.reference) if args.format == 'markdown' else \
        formatter(table)
    if args.output:
        with open(args.output, 'w') as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    if args.format != 'markdown':  # the notes go to stderr so that the output stays parseable
        for note in table.notes:
            print(f'note: {note}', file=sys.stderr)
    if args.plot:
        plot_table(table, args.plot, curves=args.curves)
    tabulated = any(r.control_mean is not None or r.treatment_mean is not None for r in table.rows)
    if not tabulated:
        print(f'nothing could be tabulated from {", ".join(args.dirs)} '
              f'({len(runs)} runs found)', file=sys.stderr)
        return 1
    return 0
