# +CB twin of deit-s16_8xb128-300e_in1k-224.py: the same recipe, the one key in which the arms differ.
_base_ = './deit-s16_8xb128-300e_in1k-224.py'
model = dict(backbone=dict(cb=True))
