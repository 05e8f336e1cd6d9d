"""mmengine's own checkpoints save, resume and test under torch's weights-only default; a pickle
that would run code is still refused."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from helpers import ToyRegressor, toy_runner
from mmengine.runner import load_checkpoint

import cb_transfer  # noqa: F401  (allowlists mmengine's checkpoint types)
from cb_transfer.models import read_state_dict


def make_runner(work_dir, max_iters, resume=False):
    """A toy run whose checkpoints hold what mmengine's do: message hub, schedulers, optimizer."""
    return toy_runner(work_dir, max_iters, save_every=4, resume=resume, param_scheduler=[
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, end=2),
        dict(type='PolyLR', by_epoch=False, begin=2, end=max_iters)])


def test_runner_checkpoint_resumes_with_weights_only_on(tmp_path):
    assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in os.environ
    make_runner(tmp_path / 'a', max_iters=4).train()
    ckpt = tmp_path / 'a' / 'iter_4.pth'
    # the checkpoint holds more than tensors: without cb_transfer, torch refuses it...
    proc = subprocess.run([sys.executable, '-c', f'import torch; torch.load({str(ckpt)!r})'],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert 'Unsupported global: GLOBAL mmengine.logging.history_buffer.HistoryBuffer' in proc.stderr
    # ...with it, it loads with weights_only=True
    loaded = torch.load(ckpt, weights_only=True)
    assert loaded['meta']['iter'] == 4

    # resume in a second run: it continues from iteration 4 with the saved optimizer state
    runner = make_runner(tmp_path / 'a', max_iters=8, resume=True)
    runner.train()
    assert runner.iter == 8
    assert (tmp_path / 'a' / 'iter_8.pth').exists()

    # and a test-time load of the weights (tools/test.py CKPT, load_from)
    model = ToyRegressor()
    load_checkpoint(model, str(ckpt), map_location='cpu')
    assert torch.equal(model.linear.weight, loaded['state_dict']['linear.weight'])


class RunsCode:
    """A pickle payload: unpickling it would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


class ReachesAttribute:
    """A payload that abuses ``getattr``, the one builtin mmengine's checkpoints need."""

    def __reduce__(self):
        return (getattr, (np.ndarray, 'tofile'))


@pytest.mark.parametrize('load', [
    lambda f: torch.load(f),
    lambda f: torch.load(f, weights_only=True),
    lambda f: load_checkpoint(nn.Linear(1, 1), str(f)),
    lambda f: read_state_dict(str(f)),
], ids=['torch.load', 'weights_only', 'mmengine.load_checkpoint', 'cb_transfer.read_state_dict'])
def test_code_running_pickle_is_refused(tmp_path, load):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'payload': RunsCode(marker)}, path)
    with pytest.raises((pickle.UnpicklingError, RuntimeError), match='system|refused|Unsupported'):
        load(path)
    assert not marker.exists()


def test_getattr_is_refused_beyond_history_buffer(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'payload': ReachesAttribute()}, path)
    with pytest.raises(pickle.UnpicklingError, match='refused getattr'):
        torch.load(path, weights_only=True)
