"""ExactResumeHook on a toy Runner: a run killed between saving a checkpoint and validating
resumes with that validation done, and the same numbers as a run never killed."""
from pathlib import Path

import pytest
import torch
from helpers import evaluations, toy_runner
from mmengine.hooks import Hook

class KilledBeforeValidating(Hook):
    """Ends the run where a kill between saving and validating would (mmengine saves iteration
    ``at``'s checkpoint in ``after_train_iter``, then validates)."""

    def __init__(self, at):
        self.at = at

    def before_val(self, runner):
        if runner.iter == self.at:
            raise KeyboardInterrupt(f'killed after saving iteration {self.at}')


def make_runner(work_dir: Path, resume=False, hooks=()):
    return toy_runner(work_dir, max_iters=8, save_every=2, validate_every=4, dropout=0.5,
                      hooks=hooks, resume=resume)


def validations(work_dir: Path) -> dict:
    """Every validation logged under ``work_dir``, by iteration (later runs override)."""
    return {step: values['toy/mse'] for step, values in evaluations(work_dir).items()}


@pytest.fixture(scope='module')
def whole(tmp_path_factory) -> Path:
    """The run never killed."""
    work_dir = tmp_path_factory.mktemp('whole')
    make_runner(work_dir).train()
    return work_dir


@pytest.mark.parametrize('killed_at', [4, 8])  # part-way, and at the last iteration
def test_a_run_killed_before_validating_validates_when_resumed(tmp_path, whole, killed_at):
    uninterrupted = validations(whole)
    assert sorted(uninterrupted) == [4, 8]

    killed = tmp_path / 'killed'
    with pytest.raises(KeyboardInterrupt):
        make_runner(killed, hooks=[KilledBeforeValidating(killed_at)]).train()
    assert (killed / f'iter_{killed_at}.pth').exists() and killed_at not in validations(killed)
    make_runner(killed, resume=True).train()
    assert validations(killed) == uninterrupted
    end, expected = (torch.load(d / 'iter_8.pth')['state_dict'] for d in (killed, whole))
    assert all(torch.equal(end[k], expected[k]) for k in expected)


def test_a_run_resumed_between_evaluation_points_does_not_validate_there(tmp_path):
    with pytest.raises(KeyboardInterrupt):  # stopped at 4 after saving 4 (and 2)
        make_runner(tmp_path, hooks=[KilledBeforeValidating(4)]).train()
    (tmp_path / 'iter_4.pth').unlink()
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_2.pth'))
    make_runner(tmp_path, resume=True).train()
    assert sorted(validations(tmp_path)) == [4, 8]
