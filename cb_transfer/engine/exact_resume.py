"""A hook that makes a resumed run continue exactly where the interrupted one stopped."""
import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop

from ..registry import HOOKS


def capture_rng_state() -> dict:
    state = dict(python=random.getstate(), numpy=np.random.get_state(),
                 torch=torch.get_rng_state())
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def reseed(seed: int, rank: int, unit: str, completed: int) -> None:
    """Seed python's, numpy's and torch's generators from (seed, rank, unit, steps completed):
    the state every draw after that step comes from, on every rank, in every run."""
    entropy = [seed % 2 ** 32, rank, 0 if unit == 'iteration' else 1, completed]
    state = np.random.SeedSequence(entropy).generate_state(2)
    value = int(state[0]) << 32 | int(state[1])
    random.seed(value)
    np.random.seed(int(state[0]))
    torch.manual_seed(value)  # every device's generator


class _ReseedAfterSkip:
    """Wraps a train loop's data iterator: after the loop's ``skip`` resume-time ``next`` calls,
    which replay the data pipeline and its random draws, seed the generators as the interrupted
    run seeded them after that iteration."""

    def __init__(self, iterator, skip: int, reseed_there):
        self.iterator, self.skip, self.reseed_there = iterator, skip, reseed_there

    def __next__(self):
        batch = next(self.iterator)
        self.skip -= 1
        if self.skip == 0:
            self.reseed_there()
        return batch

    def __iter__(self):
        return self

    def __getattr__(self, name):
        return getattr(self.iterator, name)


def _unit(loop) -> str:
    return 'iteration' if isinstance(loop, IterBasedTrainLoop) else 'epoch'


def _evaluation_point(loop) -> bool:
    """Whether the train loop validates after the iteration (or epoch) it stands at, by the
    rule of mmengine's loops."""
    if not hasattr(loop, 'val_begin'):  # a loop of another kind
        return False
    iterations = isinstance(loop, IterBasedTrainLoop)
    step, end = (loop.iter, loop.max_iters) if iterations else (loop.epoch, loop.max_epochs)
    return step >= loop.val_begin and (step % loop.val_interval == 0 or step == end)


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Make the random draws of a run a function of the steps it has completed, so that a run
    resumed from any checkpoint continues exactly as the interrupted one did.

    mmengine restores weights, optimizer, schedulers and the data position on ``--resume``, but
    not the generators behind data augmentation, dropout and drop path, so a resumed run drifts
    from the run it continues. Saving the generators' state in the checkpoint is not enough with
    several processes: rank 0 writes the checkpoint, and the other ranks' generators are in
    other states (their images drew other numbers: a random crop retries by the image's aspect
    ratio). This hook instead seeds every generator after each training iteration (or epoch)
    from the run's seed, the step and, where ``randomness.diff_rank_seed`` asks for it, the rank
    (:func:`reseed`); a resumed run seeds them the same way at the step it resumes from, on every
    rank, with nothing saved. With it a run killed part-way and resumed ends with the same weights
    and metrics as an uninterrupted one (the tests check it on CPU, with one and two processes).

    An iteration-based loop replays the data pipeline up to the resumed iteration (mmengine's
    "Advance dataloader"), drawing random numbers; the seeding therefore comes right after that
    replay, before the first new batch is read. An epoch-based loop resumes at an epoch boundary
    and is seeded before training starts. Validation, which the interrupted run did after saving
    and the resumed run does not repeat, draws numbers too (a data loader takes its seed from
    torch's generator), so the hook gives it its own stream: the training state is put back when
    validation ends.

    mmengine saves a checkpoint before the validation of the same iteration (or epoch), so a run
    killed in between resumes past a validation it never finished, and its log would end with an
    older one (at the last iteration, the run has no next one to log). A run resumed at an
    evaluation point therefore validates there first (a repeat where the interrupted run got
    that far: the same weights, the same numbers).
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._before_val: Optional[dict] = None

    def _reseed(self, runner, unit: str, completed: int) -> None:
        from mmengine.dist import get_rank
        diff_rank = bool((runner.cfg.get('randomness') or {}).get('diff_rank_seed', False))
        reseed(runner.seed, get_rank() if diff_rank else 0, unit, completed)

    def before_val(self, runner) -> None:
        """Validation draws from a stream of its own: keep the training state."""
        self._before_val = capture_rng_state()

    def after_val(self, runner) -> None:
        """Put the training state back, as it was before validation."""
        if self._before_val is not None:
            restore_rng_state(self._before_val)
            self._before_val = None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        """Seed the generators for what follows this iteration (mmengine counts it after the
        hooks: ``runner.iter + 1`` iterations are done)."""
        if isinstance(runner.train_loop, IterBasedTrainLoop):
            self._reseed(runner, 'iteration', runner.iter + 1)

    def after_train_epoch(self, runner) -> None:
        """Seed the generators for what follows this epoch (``runner.epoch + 1`` are done)."""
        if not isinstance(runner.train_loop, IterBasedTrainLoop):
            self._reseed(runner, 'epoch', runner.epoch + 1)

    def before_train(self, runner) -> None:
        """On a resumed run: validate first at an evaluation point, then seed the generators as
        the interrupted run did at the step it resumes from (after the data replay, for
        iteration-based loops)."""
        if runner.iter == 0:  # not a resumed run
            return
        loop = runner.train_loop
        if _evaluation_point(loop) and runner.val_loop is not None:
            print_log(f'validating at the resumed {_unit(loop)} first: the interrupted run saved '
                      'its checkpoint before this validation', logger='current')
            runner.val_loop.run()
        if isinstance(loop, IterBasedTrainLoop):
            loop.dataloader_iterator = _ReseedAfterSkip(
                loop.dataloader_iterator, runner.iter,
                lambda: self._reseed(runner, 'iteration', runner.iter))
        else:
            self._reseed(runner, 'epoch', runner.epoch)
        print_log(f'seeding the random generators as at {_unit(loop)} '
                  f'{runner.iter if isinstance(loop, IterBasedTrainLoop) else runner.epoch}',
                  logger='current')
