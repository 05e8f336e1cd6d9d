"""How numbers, intervals and rows are written, everywhere a table, report or figure shows them."""
from typing import Optional, Sequence

from ..experiment import CONTROL


def num(value: Optional[float], digits: int = 2, sign: bool = False, missing: str = '-') -> str:
    """A number with ``digits`` decimals (``sign``: always with its sign); ``missing`` for
    None."""
    if value is None:
        return missing
    return f'{value:+.{digits}f}' if sign else f'{value:.{digits}f}'


def interval(ci: Optional[Sequence[float]], digits: int = 2, sign: bool = False,
             missing: str = 'no interval') -> str:
    """``[low, high]``; ``missing`` when there is none."""
    if ci is None or ci[0] is None:
        return missing
    return f'[{num(ci[0], digits, sign)}, {num(ci[1], digits, sign)}]'


DEFAULT_ARMS = ('', CONTROL, '+CB(mlp)')   # the arms a label need not name


def arch_name(arch: str) -> str:
    """The timm architecture without the size overrides the tables append in brackets."""
    return arch.split('(')[0]


def arm_text(row) -> str:
    """A row's arm, and its control where that is not ``plain``: ``'+CB(mlp)'``,
    ``'+CB(mlp)+reg4 vs +reg4'``."""
    arm, control = getattr(row, 'arm', ''), getattr(row, 'control', CONTROL)
    if control in ('', CONTROL) or getattr(row, 'contrast', ''):
        return arm
    return f'{arm} vs {control}'


def row_label(row, metric: bool = True, protocol: bool = False, separator: str = ' ') -> str:
    """A row (or run, or anything with ``model``, ``arch``, ``schedule``) as text:
    ``'UPerNet deit_small_patch16_224 160k mIoU'``, the arm added in brackets where it is not the
    default comparison (plain against ``+CB(mlp)``)."""
    parts = [f'{row.model} {arch_name(row.arch)}']
    tail = [row.schedule]
    if metric and getattr(row, 'metric', None):
        tail.append(row.metric)
    if protocol:
        tail.append(f'({row.protocol})')
    arm = arm_text(row)
    if arm not in DEFAULT_ARMS:
        tail.append(f'[{arm}]')
    return separator.join(parts + [' '.join(tail)])
