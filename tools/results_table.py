"""Tabulate the gains of +CB over plain backbones: python tools/results_table.py WORK_DIRS... [--help]"""
import sys

from cb_transfer.results.cli import main

if __name__ == '__main__':
    sys.exit(main())
