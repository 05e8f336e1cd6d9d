"""python -m cb_transfer.data [DATA_ROOT] [--seed N]: write the smoke data sets (ImageNet,
ADE20K and COCO layout) where the smoke configs expect them (default data/smoke)."""
import argparse

from .synthetic import make_smoke_data

parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
parser.add_argument('data_root', nargs='?', default='data/smoke')
parser.add_argument('--seed', type=int, default=0)
args = parser.parse_args()
for root in make_smoke_data(args.data_root, args.seed):
    print(root)
