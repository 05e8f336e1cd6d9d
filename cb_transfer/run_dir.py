"""A run's work dir: the one place that knows its layout, and the run's record.

Every reader of a run (the suite's state, the console, Slurm's status, the dry run, the tables, the
report, the attention analysis) goes through :class:`RunDir`; nothing else globs a work dir or
parses mmengine's files. The layout::

    <work dir>/<timestamp>/vis_data/config.py     the resolved config of each start (mmengine)
    <work dir>/<timestamp>/vis_data/scalars.json  training and evaluation scalars, a JSON a line
    <work dir>/<timestamp>/<timestamp>.log         the text log, for humans
    <work dir>/<timestamp>/<timestamp>.json        test metrics (a test run)
    <work dir>/iter_N.pth | epoch_N.pth            checkpoints; last_checkpoint names the newest
    <work dir>/record.json                         the suite's record, written once, when done
    <work dir>/claim.json                          who is running the run now
    <work dir>/attempts/<n>/                       unusable attempts, moved aside with their logs
    <work dir>/robustness/                         the robustness evaluation of the run's final
                                                   checkpoint (a run dir with its own record)

A resumed run has several timestamp folders; they are read as one run, in time order.

The record (:class:`cb_transfer.record.RunRecord`) holds what readers need without parsing logs;
for a suite run it is the one notion of done. The claim (:class:`Claim`) keeps two invocations
off one run.
"""
import dataclasses
import datetime
import json
import math
import os
import shutil
import socket
import statistics
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .engine.checkpoints import CHECKPOINT_NAME, find_resumable_checkpoint
from .record import RecordError, RunRecord

RECORD = 'record.json'
CLAIM = 'claim.json'
ATTEMPTS = 'attempts'
ROBUSTNESS = 'robustness'   # the run's robustness evaluation: a run dir of its own, inside


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec='seconds')


def write_json_atomically(path: Path, data) -> None:
    """Write ``data`` as JSON to ``path`` so that a reader sees the old file or the new one,
    never half of one (a run killed while writing leaves no record)."""
    partial = path.with_name(f'.{path.name}.{os.getpid()}.partial')
    partial.write_text(json.dumps(data, indent=2) + '\n')
    partial.replace(path)


def _read_json(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


@dataclasses.dataclass
class Claim:
    """Who runs a run: a process on a host (and the Slurm job, where there is one)."""
    host: str
    pid: int
    started: str
    job: Optional[str] = None

    @classmethod
    def mine(cls) -> 'Claim':
        return cls(socket.gethostname(), os.getpid(), now(), os.environ.get('SLURM_JOB_ID'))

    def describe(self) -> str:
        job = f', Slurm job {self.job}' if self.job else ''
        return f'{self.host} pid {self.pid}{job}, since {self.started}'

    def is_stale(self) -> bool:
        """Whether the holder is gone: a process of this host that no longer runs, a Slurm job
        that is over (or the job asking, requeued), where that can be told from here."""
        if self.job and self.job == os.environ.get('SLURM_JOB_ID'):
            return True  # this job, requeued: the earlier start of it is over
        if self.host == socket.gethostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
            return False
        if self.job and shutil.which('scontrol'):
            from .suite.lifecycle import Phase, slurm_job
            return slurm_job(self.job).phase is Phase.ENDED
        return False


class RunHeld(RuntimeError):
    """The run is claimed by a live process elsewhere."""

    def __init__(self, run_dir: 'RunDir', holder: Claim) -> None:
        super().__init__(f'{run_dir.path} is being run by {holder.describe()}')
        self.holder = holder


class RunDir:
    """A run's work dir. Reading never raises on a damaged file: what cannot be read is noted
    in ``problems`` (with file and line) and left out.

    Args:
        path: The work dir.
        problems: Where to note what could not be read (a list shared by several runs).
    """

    def __init__(self, path, problems: Optional[List[str]] = None) -> None:
        self.path = Path(path)
        self.problems = problems if problems is not None else []

    def __repr__(self) -> str:
        return f'RunDir({str(self.path)!r})'

    # ---- mmengine's files ------------------------------------------------------------------
    def starts(self) -> List[Path]:
        """The timestamp folders, one per start of mmengine's Runner, oldest first."""
        return sorted(p.parent for p in self.path.glob('*/vis_data') if p.is_dir())

    def config_file(self) -> Optional[Path]:
        """The config the latest start dumped (or one left beside the timestamp folders)."""
        dumped = [f / 'vis_data' / 'config.py' for f in self.starts()
                  if (f / 'vis_data' / 'config.py').is_file()]
        return (dumped or sorted(self.path.glob('*.py')) or [None])[-1]

    def config(self) -> Optional[dict]:
        """The resolved config (as a dict), or None when there is none that reads."""
        if not hasattr(self, '_config'):
            from mmengine.config import Config
            path, self._config = self.config_file(), None
            if path is None:
                self.problems.append(f'{self.path}: no dumped config; run skipped')
            else:
                try:
                    self._config = Config.fromfile(str(path)).to_dict()
                except Exception as err:  # unreadable config: the run is unidentifiable
                    self.problems.append(f'{path}: config unreadable '
                                         f'({type(err).__name__}: {err})')
        return self._config

    def json_lines(self, path: Path) -> Iterable[Tuple[int, dict]]:
        """(line number, object) of a file of JSON objects, one a line."""
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            self.problems.append(f'{path}: unreadable ({err})')
            return
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                self.problems.append(f'{path}:{number}: corrupt or truncated line skipped '
                                     f'({err.msg})')
                continue
            if not isinstance(record, dict):
                self.problems.append(f'{path}:{number}: not a JSON object, skipped')
                continue
            yield number, record

    def scalars(self) -> Tuple[Dict[int, dict], Dict[int, dict]]:
        """mmengine's logged scalars of every start, by step: (training, evaluation).

        A training entry has the loss or a learning rate; anything else logged at a step is an
        evaluation's.
        """
        if not hasattr(self, '_scalars'):
            train: Dict[int, dict] = {}
            evaluation: Dict[int, dict] = {}
            for start in self.starts():
                path = start / 'vis_data' / 'scalars.json'
                if not path.is_file():
                    continue
                for number, record in self.json_lines(path):
                    step = record.get('step')
                    if not isinstance(step, int):
                        self.problems.append(f'{path}:{number}: no step, skipped')
                        continue
                    is_train = 'loss' in record or any(k == 'lr' or k.endswith('lr')
                                                       for k in record)
                    (train if is_train else evaluation).setdefault(step, {}).update(record)
            self._scalars = (train, evaluation)
        return self._scalars

    def test_metrics(self) -> Optional[dict]:
        """What the latest test wrote (``<timestamp>/<timestamp>.json``), or None."""
        found = None
        for start in self.starts():
            path = start / f'{start.name}.json'
            if path.is_file():
                for _, record in self.json_lines(path):
                    found = record
        return found

    def iteration_reached(self) -> Optional[int]:
        """The last training step logged (any start)."""
        train, _ = self.scalars()
        return max(train) if train else None

    def seconds_per_iter(self) -> Optional[float]:
        """The median time of a training iteration, as mmengine logged it."""
        train, _ = self.scalars()
        times = [r['time'] for r in train.values()
                 if isinstance(r.get('time'), (int, float)) and math.isfinite(r['time'])]
        return statistics.median(times) if times else None

    def last_checkpoint(self) -> Optional[Path]:
        """The checkpoint mmengine names as its newest (``last_checkpoint``)."""
        marker = self.path / 'last_checkpoint'
        if not marker.is_file():
            return None
        checkpoint = Path(marker.read_text().strip())
        if not checkpoint.is_file():  # written relative to where the run was started
            checkpoint = self.path / checkpoint.name
        return checkpoint if checkpoint.is_file() else None

    def checkpoints(self) -> List[Path]:
        """mmengine's checkpoints of the run (``iter_N.pth``, ``epoch_N.pth``), unread."""
        return sorted(p for p in self.path.glob('*.pth') if CHECKPOINT_NAME.match(p.name))

    def resumable_checkpoint(self) -> Tuple[Optional[Path], List[str]]:
        """The newest checkpoint that reads back whole, and why newer ones were passed over."""
        return find_resumable_checkpoint(str(self.path))

    # ---- the suite's record ------------------------------------------------------------------
    @property
    def record(self) -> Optional[RunRecord]:
        """The run's record; None while it is not done (or its record is unreadable, which is
        noted, naming the schema)."""
        path = self.path / RECORD
        if not path.is_file():
            return None
        data = _read_json(path)
        if data is None:
            self.problems.append(f'{path}: unreadable record (not a JSON object)')
            return None
        try:
            return RunRecord.from_dict(data, config=self.config)
        except RecordError as err:
            self.problems.append(f'{path}: unreadable record ({err})')
            return None

    @property
    def done(self) -> bool:
        """Its record is there (:class:`cb_transfer.suite.lifecycle.State` ``DONE``)."""
        return self.record is not None

    def write_record(self, record: RunRecord) -> Path:
        write_json_atomically(self.path / RECORD, record.to_dict())
        return self.path / RECORD

    # ---- claims ------------------------------------------------------------------------------
    def holder(self) -> Optional[Claim]:
        data = _read_json(self.path / CLAIM)
        try:
            return Claim(**data) if data else None
        except TypeError:
            return None

    def claim(self) -> Optional[Claim]:
        """Claim the run for this process, taking over the claim of a holder that is gone.

        Returns:
            The stale claim taken over, if any.

        Raises:
            RunHeld: a live process holds it.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        path, taken_over = self.path / CLAIM, None
        mine = Claim.mine()
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                if holder is not None and (holder.pid, holder.host) == (mine.pid, mine.host):
                    return None  # claimed already by this process
                if holder is not None and not holder.is_stale():
                    raise RunHeld(self, holder)
                try:  # one of several processes taking over a stale claim wins this rename
                    os.rename(path, self.path / f'.{CLAIM}.stale.{os.getpid()}')
                except FileNotFoundError:
                    continue
                os.remove(self.path / f'.{CLAIM}.stale.{os.getpid()}')
                taken_over = holder
                continue
            with os.fdopen(fd, 'w') as f:
                json.dump(dataclasses.asdict(mine), f)
            return taken_over
        raise RunHeld(self, self.holder() or mine)

    def release(self) -> None:
        """Give up this process's claim (another's is left alone)."""
        holder = self.holder()
        if holder is not None and (holder.pid, holder.host) == (os.getpid(),
                                                                 socket.gethostname()):
            (self.path / CLAIM).unlink(missing_ok=True)

    def move_aside(self, keep: Sequence[str] = ()) -> Optional[Path]:
        """Move everything of an unusable attempt (logs included) into ``attempts/<n>/``, so that
        the run starts afresh with the evidence kept; None when there was nothing to move.

        Args:
            keep: Names to leave where they are besides the claim (the folder in which a
                scheduler writes the running job's own logs).
        """
        keep = {ATTEMPTS, CLAIM, *keep}
        entries = [p for p in self.path.iterdir() if p.name not in keep] \
            if self.path.is_dir() else []
        if not entries:
            return None
        attempts = self.path / ATTEMPTS
        number = 1 + max((int(p.name) for p in attempts.glob('*') if p.name.isdigit()),
                         default=0)
        target = attempts / str(number)
        target.mkdir(parents=True)
        for entry in entries:
            entry.rename(target / entry.name)
        return target
