"""Run a benchmark suite and print the table: python tools/run_suite.py [SUITE_FILE] [--help]"""
import sys

from cb_transfer.suite import main

if __name__ == '__main__':
    sys.exit(main())
