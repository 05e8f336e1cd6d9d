"""The standard corruptions, runnable in this stack, and applied the same way to every arm.

imagecorruptions 1.1.2 (Michaelis et al.'s package, the one mmdet's ``Corrupt`` calls; its last
release) predates numpy 2 and scikit-image 0.19: ``glass_blur`` and ``gaussian_blur`` pass
``gaussian(..., multichannel=True)``, which scikit-image replaced by ``channel_axis=-1``, and
``fog`` allocates with ``np.float_``, which numpy 2 removed. Its fix was never released, and the
fork on the registry (imagecorruptions-imaug) changes the algorithms (float32 fractals, numba
kernels). So the published code runs as it is, and :func:`make_compatible` gives its module the
two names it expects: a ``gaussian`` that maps ``multichannel=True`` to ``channel_axis=-1``, and
a ``np`` whose ``float_`` is ``float64`` (what it was), visible to that module only.

Every corruption draws its randomness from numpy's global state, which :func:`corrupt` seeds,
except ``impulse_noise``: it calls scikit-image's ``random_noise``, which draws from a generator
of its own, freshly seeded from the operating system unless given one. The module's ``sk`` is
therefore scikit-image with a ``random_noise`` that is handed a generator seeded from numpy's
global state; the noise itself (salt and pepper, the published amounts) is scikit-image's.

:class:`SeededCorrupt` is mmdet's ``Corrupt`` with the random draws of each image fixed by the
corruption, severity and image file: both arms, and a re-run, see identical pixels.
"""
import types
import zlib
from os import path as osp

import numpy as np
from mmdet.datasets.transforms.transforms import Corrupt

from ..registry import TRANSFORMS

# the 15 benchmark corruptions of ImageNet-C / COCO-C, by family, and the 4 held out
FAMILIES = {
    'noise': ('gaussian_noise', 'shot_noise', 'impulse_noise'),
    'blur': ('defocus_blur', 'glass_blur', 'motion_blur', 'zoom_blur'),
    'weather': ('snow', 'frost', 'fog', 'brightness'),
    'digital': ('contrast', 'elastic_transform', 'pixelate', 'jpeg_compression'),
}
BENCHMARK = tuple(name for names in FAMILIES.values() for name in names)
HELD_OUT = ('speckle_noise', 'gaussian_blur', 'spatter', 'saturate')
SEVERITIES = (1, 2, 3, 4, 5)


class _NumpyAsItWas(types.ModuleType):
    """numpy, plus the ``float_`` alias numpy 2 removed."""
    float_ = np.float64

    def __getattr__(self, name):
        return getattr(np, name)


class _SkimageSeeded(types.ModuleType):
    """scikit-image, whose ``util.random_noise`` draws from numpy's global state."""

    def __init__(self) -> None:
        import skimage.util
        super().__init__('skimage')
        self.util = types.SimpleNamespace(random_noise=self._random_noise)
        self._random_noise_of_skimage = skimage.util.random_noise

    def _random_noise(self, image, mode='gaussian', rng=None, **kwargs):
        if rng is None:
            rng = np.random.default_rng(np.random.randint(2 ** 31))
        return self._random_noise_of_skimage(image, mode=mode, rng=rng, **kwargs)

    def __getattr__(self, name):
        import skimage
        return getattr(skimage, name)


def make_compatible() -> None:
    """Let imagecorruptions' published code run under numpy 2 and scikit-image >= 0.19, every
    corruption drawing from numpy's global state (idempotent; changes nothing outside that
    module)."""
    from imagecorruptions import corruptions
    if getattr(corruptions.gaussian, 'compatible', False):
        return
    from skimage.filters import gaussian

    def gaussian_compatible(image, sigma=1, multichannel=None, **kwargs):
        if multichannel is not None:
            kwargs['channel_axis'] = -1 if multichannel else None
        return gaussian(image, sigma=sigma, **kwargs)

    gaussian_compatible.compatible = True
    corruptions.gaussian = gaussian_compatible
    corruptions.np = _NumpyAsItWas('numpy')
    corruptions.sk = _SkimageSeeded()


def corrupt(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """``image`` (H, W, 3 uint8) under a corruption, its random draws from ``seed``."""
    from imagecorruptions import corrupt as imagecorruptions_corrupt
    make_compatible()
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        return imagecorruptions_corrupt(image, corruption_name=name, severity=severity)
    finally:
        np.random.set_state(state)


def image_seed(name: str, severity: int, image: str) -> int:
    """The seed of one image's corruption: the same for every arm and every re-run."""
    return zlib.crc32(f'{name}:{severity}:{osp.basename(image)}'.encode())


@TRANSFORMS.register_module()
class SeededCorrupt(Corrupt):
    """mmdet's ``Corrupt`` with each image's random draws fixed by the corruption, severity and
    image file name; used right after ``LoadImageFromFile``, as mmdet's robustness tool does.

    Args:
        corruption: An imagecorruptions name (``BENCHMARK`` or ``HELD_OUT``).
        severity: 1 to 5.
    """

    def __init__(self, corruption: str, severity: int = 1) -> None:
        if corruption not in BENCHMARK + HELD_OUT:
            raise ValueError(f'corruption={corruption!r} is not one of imagecorruptions\' '
                             f'{", ".join(BENCHMARK + HELD_OUT)}')
        if severity not in SEVERITIES:
            raise ValueError(f'severity={severity!r} is not one of {SEVERITIES}')
        super().__init__(corruption, severity)

    def transform(self, results: dict) -> dict:
        seed = image_seed(self.corruption, self.severity, results.get('img_path') or '')
        results['img'] = corrupt(results['img'].astype(np.uint8), self.corruption,
                                 self.severity, seed)
        return results
