"""Test a checkpoint of a segmentation or detection config: mmseg/mmdet's test.py flags."""
from cb_transfer.launch import main_test

if __name__ == '__main__':
    main_test()
