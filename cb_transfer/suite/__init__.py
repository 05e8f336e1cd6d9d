"""The main job: a suite of pretraining and fine-tuning runs, carried out and reported.

- :mod:`.plan` reads a suite file into a plan: pure data, the runs in order and which upstream
  run feeds which downstream arm (and so the protocol of each comparison).
- :mod:`.job` is one run's work, whichever executor carries it out: train, test, and the run's
  record (:mod:`cb_transfer.run_dir` owns the work dir and reads a run's state from it).
- Executors (:mod:`.executor`, one interface) decide only how: :mod:`.local` (in this process or
  worker processes, the embedded default), :mod:`.torchrun` (a torchrun launch per run),
  :mod:`.slurm` (a Slurm job per run, through submitit).
- :mod:`.console` keeps the main job's console to its own lines.
- :mod:`.cli` is ``tools/run_suite.py`` / ``cb-run-suite``.
"""
from .cli import main
from .plan import Plan, PlannedRun, load_plan

__all__ = ['main', 'Plan', 'PlannedRun', 'load_plan']
