"""Let mmengine's own checkpoints load under torch's weights-only default, and nothing more.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``, and since torch 2.6 that means
weights-only. Its checkpoints (resume, ``load_from``, ``tools/test.py CKPT``) hold a few objects
beyond tensors: the message hub's ``HistoryBuffer`` and the numpy arrays and scalars inside it, and
the buffers' statistics methods, which pickle as ``getattr(HistoryBuffer, 'mean')``. We allowlist exactly
those. ``builtins.getattr`` itself is never allowed (with it a pickle could reach any attribute of
any object it can build and call it): the name maps to :func:`history_buffer_method`, which only
returns a statistics method of a ``HistoryBuffer``. A pickle that would run code is still refused.
Setting ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` would instead switch the check off for every file.
"""
import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from pickle import UnpicklingError


STATISTICS_METHODS = ('min', 'max', 'current', 'mean')


def history_buffer_method(obj: object, name: str):
    """``getattr(obj, name)`` for the statistics methods of ``HistoryBuffer``; refuses the rest."""
    allowed = set(STATISTICS_METHODS) | set(HistoryBuffer._statistics_methods)
    if (obj is HistoryBuffer or type(obj) is HistoryBuffer) and name in allowed:
        return getattr(obj, name)
    raise UnpicklingError(
        f'refused getattr({obj!r:.80}, {name!r}) while loading a checkpoint: only the statistics '
        f'methods of mmengine HistoryBuffer ({", ".join(sorted(allowed))}) are allowed')


def allow_mmengine_checkpoints() -> None:
    """Allowlist the types mmengine writes into its checkpoints (process-wide, idempotent)."""
    multiarray = np._core.multiarray
    allowed = [HistoryBuffer, np.ndarray, np.dtype, (history_buffer_method, 'builtins.getattr')]
    # numpy 2 pickles from numpy._core, numpy 1.x (older checkpoints) from numpy.core
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        allowed += [(multiarray._reconstruct, f'{module}._reconstruct'),
                    (multiarray.scalar, f'{module}.scalar')]
    # an unpickled dtype's state is set on its concrete class (numpy.dtypes.Float64DType etc.)
    allowed += [cls for cls in vars(np.dtypes).values()
                if isinstance(cls, type) and issubclass(cls, np.dtype)]
    torch.serialization.add_safe_globals(allowed)
