"""Downstream robustness: each fine-tuned arm evaluated on corrupted copies of its validation set.

- :mod:`.corruptions`: the standard corruptions (imagecorruptions, as COCO-C and ImageNet-C define
  them) made to run under numpy 2 and current scikit-image, and mmdet's ``Corrupt`` transform with
  the random draws of each image fixed, so that every arm sees the same corrupted pixels.
- :mod:`.metrics`: P, mPC and rPC as the literature defines them (a subset of corruptions or
  severities is labelled, never called mPC).
- :mod:`.evaluate`: the suite's evaluation-only stage for one run: clean and each corruption and
  severity, resumable, recorded with the run.

(Nothing is imported here: :mod:`.corruptions` imports mmdet, which readers of results do not
need; mmengine imports it by itself for ``type='cb_transfer.SeededCorrupt'``.)
"""
