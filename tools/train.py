"""Train a segmentation or detection config (its scope decides): mmseg/mmdet's train.py flags."""
from cb_transfer.launch import main_train

if __name__ == '__main__':
    main_train()
