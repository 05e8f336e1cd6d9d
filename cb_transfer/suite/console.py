"""The main job's console: its own lines only, everything else in log files.

:class:`Console` writes to the terminal the suite started with. :func:`capture_output` sends
whatever else this process writes, at the level of the file descriptors (mmengine's log stream,
library warnings, pycocotools' printed tables, output of compiled code alike), to a log file, with
Python's "show each warning once" memory reset so that every run's log holds the warnings that
run met.
"""
import contextlib
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator, TextIO


def clock(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


class Console:
    """Lines for the user. On a terminal the progress of a run updates one line in place;
    elsewhere (a file, a pipe, CI) it is printed as a line at most every ``interval`` seconds."""

    def __init__(self, stream: TextIO, interval: float = 20.0) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = interval
        # the first line after one interval: estimates made in the first seconds are start-up
        self._last_update = time.monotonic()
        self._open_line = False

    def line(self, text: str) -> None:
        if self._open_line:
            self.stream.write('\n')
            self._open_line = False
        self.stream.write(text + '\n')
        self.stream.flush()

    def update(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            width = os.get_terminal_size(self.stream.fileno()).columns - 1
            self.stream.write('\r' + text[:width].ljust(width))
            self._open_line = True
            self.stream.flush()
        elif force or now - self._last_update >= self.interval:
            self.line(text)
        else:
            return
        self._last_update = now


@contextlib.contextmanager
def capture_output(log_file: Path) -> Iterator[Path]:
    """Send everything written to file descriptors 1 and 2 (and Python's warnings) to
    ``log_file`` (appended) while the block runs; the console keeps writing to the terminal."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    # entering catch_warnings invalidates each module's "already shown" registry: this run's log
    # gets the warnings this run raises, even where an earlier run raised them too
    with open(log_file, 'a') as log, warnings.catch_warnings():
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield log_file
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def console_stream() -> TextIO:
    """A text stream on the terminal this process started with, unaffected by
    :func:`capture_output` (which redirects file descriptors 1 and 2)."""
    return os.fdopen(os.dup(sys.stdout.fileno()), 'w', buffering=1)
