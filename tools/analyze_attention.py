"""Attention statistics of checkpoints or suite work dirs: tools/analyze_attention.py --help"""
import sys

from cb_transfer.analysis.cli import main

if __name__ == '__main__':
    sys.exit(main())
