"""What CB costs, and our ViT against mmseg's: python tools/benchmark.py [--help]"""
import sys

from cb_transfer.benchmark import main

if __name__ == '__main__':
    sys.exit(main())
