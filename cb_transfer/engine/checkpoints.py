"""Which checkpoint a run resumes from: the newest one that can be read back whole.

mmengine resumes from the file named in ``<work_dir>/last_checkpoint``. A run killed while saving,
on a full disk, or with a file truncated on copy leaves that file unreadable, and the resume then
ends in torch's zip-reader traceback. Here every ``iter_N.pth`` / ``epoch_N.pth`` in the work dir is
a candidate, newest first; a candidate is taken only if it reads back whole (its zip directory
and the CRC of every record check out), and each one passed over is reported with the reason.
"""
import re
import zipfile
from pathlib import Path
from typing import List, Optional, Tuple

CHECKPOINT_NAME = re.compile(r'^(iter|epoch)_(\d+)\.pth$')


def _progress(path: Path) -> Tuple[int, int]:
    """(0 for epochs / 1 for iterations, number): the newest checkpoint sorts last."""
    kind, number = CHECKPOINT_NAME.match(path.name).groups()
    return (1 if kind == 'iter' else 0, int(number))


def checkpoint_problem(path: Path) -> Optional[str]:
    """Why ``path`` cannot be resumed from, or None if it reads back whole."""
    try:
        if path.stat().st_size == 0:
            return 'empty file'
        if not zipfile.is_zipfile(path):
            return 'not a complete torch checkpoint (no zip directory: truncated?)'
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            return f'corrupt record {bad!r} (CRC mismatch)'
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        return f'unreadable ({type(err).__name__}: {err})'
    return None


def find_resumable_checkpoint(work_dir: str) -> Tuple[Optional[Path], List[str]]:
    """The newest readable checkpoint in ``work_dir`` and a note for each newer one skipped."""
    folder = Path(work_dir)
    candidates = sorted((p for p in folder.glob('*.pth') if CHECKPOINT_NAME.match(p.name)),
                        key=_progress, reverse=True)
    skipped = []
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            return path, skipped
        skipped.append(f'skipped {path}: {problem}')
    return None, skipped
