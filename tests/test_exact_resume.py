"""ExactResumeHook on a toy Runner: a run killed between saving a checkpoint and validating
resumes with that validation done, and the same numbers as a run never killed."""
import itertools
import json
from pathlib import Path

import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn

RUNS = itertools.count()


class ToyRegressor(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.drop = nn.Dropout(0.5)  # random draws in training, as augmentation and drop path

    def forward(self, inputs, targets, mode='tensor'):
        out = self.linear(self.drop(inputs))
        if mode == 'loss':
            return dict(loss=((out - targets) ** 2).mean())
        return [dict(out=o, target=t) for o, t in zip(out, targets)]


class SquaredError(BaseMetric):
    default_prefix = 'toy'

    def process(self, data_batch, data_samples):
        self.results += [float((s['out'] - s['target']) ** 2) for s in data_samples]

    def compute_metrics(self, results):
        return dict(mse=sum(results) / len(results))


class KilledBeforeValidating(Hook):
    """Ends the run where a kill between saving and validating would (mmengine saves iteration
    ``at``'s checkpoint in ``after_train_iter``, then validates)."""

    def __init__(self, at):
        self.at = at

    def before_val(self, runner):
        if runner.iter == self.at:
            raise KeyboardInterrupt(f'killed after saving iteration {self.at}')


def make_runner(work_dir: Path, resume=False, hooks=()):
    data = [dict(inputs=torch.tensor([i / 8, 1 - i / 8]), targets=torch.tensor([i / 4]))
            for i in range(8)]
    loader = dict(dataset=data, batch_size=2, collate_fn=dict(type='default_collate'),
                  sampler=dict(type='InfiniteSampler', shuffle=True))
    torch.manual_seed(0)  # the model is built here, before the Runner seeds
    return Runner(
        model=ToyRegressor(), work_dir=str(work_dir), train_dataloader=loader,
        val_dataloader={**loader, 'sampler': dict(type='DefaultSampler', shuffle=False)},
        train_cfg=dict(by_epoch=False, max_iters=8, val_interval=4), val_cfg=dict(),
        val_evaluator=[SquaredError()],
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.05)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', log_metric_by_epoch=False)),
        custom_hooks=[dict(type='cb_transfer.ExactResumeHook'), *hooks],
        randomness=dict(seed=0), resume=resume,
        experiment_name=f'toy_{next(RUNS)}')  # mmengine keeps one logger per name


def validations(work_dir: Path) -> dict:
    """Every validation logged under ``work_dir``, by iteration (later runs override)."""
    out = {}
    for path in sorted(work_dir.glob('*/vis_data/scalars.json')):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if 'toy/mse' in record:
                out[record['step']] = record['toy/mse']
    return out


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
