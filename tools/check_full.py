"""Every full-size config takes real steps: see cb_transfer/check_full.py."""
import sys

from cb_transfer.check_full import main

if __name__ == '__main__':
    sys.exit(main())
