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


class _RestoreAfterSkip:
    """Wraps a train loop's data iterator: after the loop's ``skip`` resume-time ``next`` calls,
    which replay the data pipeline and its random draws, put the saved random state back."""

    def __init__(self, iterator, skip: int, state: dict):
        self.iterator, self.skip, self.state = iterator, skip, state

    def __next__(self):
        batch = next(self.iterator)
        self.skip -= 1
        if self.skip == 0:
            restore_rng_state(self.state)
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
    """Save the random generators' state in each checkpoint and restore it on resume.

    mmengine restores weights, optimizer, schedulers and the data position on ``--resume``, but
    not the generators behind data augmentation, dropout and drop path, so a resumed run drifts
    from the run it continues. With this hook a run killed part-way and resumed ends with the same
    weights and metrics as an uninterrupted one (the tests check it on CPU).

    An iteration-based loop replays the data pipeline up to the resumed iteration (mmengine's
    "Advance dataloader"), drawing random numbers; the state is therefore restored right after that
    replay, before the first new batch is read. An epoch-based loop resumes at an epoch boundary
    and the state is restored before training starts. Validation, which the interrupted run did
    after saving and the resumed run does not repeat, draws numbers too (a data loader takes its
    seed from torch's generator), so the hook gives it its own stream: the training state is put
    back when validation ends.

    mmengine saves a checkpoint before the validation of the same iteration (or epoch), so a run
    killed in between resumes past a validation it never finished, and its log would end with an
    older one (at the last iteration, the run has no next one to log). A run resumed at an
    evaluation point therefore validates there first (a repeat where the interrupted run got
    that far: the same weights, the same numbers).
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._pending: Optional[dict] = None
        self._before_val: Optional[dict] = None

    def before_val(self, runner) -> None:
        self._before_val = capture_rng_state()

    def after_val(self, runner) -> None:
        if self._before_val is not None:
            restore_rng_state(self._before_val)
            self._before_val = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_state'] = capture_rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Called for --resume and for load_from; only a resumed training run uses the state.
        self._pending = checkpoint.get('rng_state')

    def before_train(self, runner) -> None:
        state, self._pending = self._pending, None
        if runner.iter == 0:  # not a resumed run
            return
        loop = runner.train_loop
        if _evaluation_point(loop) and runner.val_loop is not None:
            print_log(f'validating at the resumed {_unit(loop)} first: the interrupted run saved '
                      'its checkpoint before this validation', logger='current')
            runner.val_loop.run()
        if state is None:
            return
        if isinstance(loop, IterBasedTrainLoop):
            loop.dataloader_iterator = _RestoreAfterSkip(loop.dataloader_iterator, runner.iter,
                                                         state)
        else:
            restore_rng_state(state)
        print_log(f'restoring the random state saved at iteration {runner.iter}',
                  logger='current')
