"""Several ViT changes against one control, end to end: the arms smoke suite (plain, +CB, +reg4,
+CB+reg4, a 2x2 factorial), each arm pretrained and fine-tuned from its own checkpoint."""
import json

import numpy as np
import pytest
from helpers import recorded_runs

from cb_transfer.run_dir import RunDir

TREATMENTS = ['+CB(mlp)', '+reg4', '+CB(mlp)+reg4']
INTERACTION = '+CB(mlp)+reg4 vs +CB(mlp) and +reg4 (interaction)'


def rows_of(arms_suite, task):
    rows = json.loads((arms_suite.work_dir / 'results.json').read_text())
    return {r['arm']: r for r in rows if r['task'] == task}


def test_three_treatment_rows_against_one_control(arms_suite):
    runs = recorded_runs(arms_suite.work_dir, 'two-stage')
    assert len(runs) == 8 and len(recorded_runs(arms_suite.work_dir, 'upstream')) == 4
    rows = rows_of(arms_suite, 'segmentation')
    assert sorted(rows) == sorted(TREATMENTS + [INTERACTION])
    # the control's two runs are shared by the three rows
    assert len({json.dumps(rows[arm]['control_values']) for arm in TREATMENTS}) == 1
    for arm in TREATMENTS:
        row = rows[arm]
        assert row['control_n'] == 2 and row['treatment_n'] == 2 and row['control'] == 'plain'
        # each arm fine-tuned from its own checkpoint: four different upstream weights
        assert row['treatment_weights'] != row['control_weights']
        gains = [t[2] - p[2] for p, t in zip(row['control_values'], row['treatment_values'])]
        assert row['gain']['delta'] == pytest.approx(np.mean(gains))
        # one pair: said, not hidden
        assert row['gain']['conditional'] and row['gain']['ci_low'] is not None
    assert len({rows[a]['treatment_weights'] for a in TREATMENTS}) == 3


def test_the_interaction_contrast_is_the_factorial_difference_per_seed(arms_suite):
    rows = rows_of(arms_suite, 'segmentation')
    by_seed = {arm: {v[1]: v[2] for v in rows[arm]['treatment_values']} for arm in TREATMENTS}
    plain = {v[1]: v[2] for v in rows['+CB(mlp)']['control_values']}
    expected = [by_seed['+CB(mlp)+reg4'][s] - by_seed['+CB(mlp)'][s] - by_seed['+reg4'][s]
                + plain[s] for s in (0, 1)]
    row = rows[INTERACTION]
    assert row['contrast'] == 'interaction'
    assert row['gain']['replicates'] == pytest.approx(expected)
    assert row['gain']['delta'] == pytest.approx(np.mean(expected))
    assert row['gain']['ci_low'] < row['gain']['delta'] < row['gain']['ci_high']
    report = (arms_suite.work_dir / 'report.md').read_text()
    assert f'| two-stage | {INTERACTION} | conditional' in report


def test_the_attention_analysis_counts_registers_as_prefix_tokens(arms_suite):
    results = json.loads((arms_suite.work_dir / 'attention' / 'attention.json').read_text())
    by_arm = {}
    for entry in results['checkpoints']:
        by_arm.setdefault(entry['arm'], []).append(entry)
    assert sorted(by_arm) == sorted(['plain'] + TREATMENTS)
    for arm, entries in by_arm.items():
        prefix = 5 if 'reg4' in arm else 1
        assert {e['prefix_tokens'] for e in entries} == {prefix}, arm
        assert {e['tokens'] for e in entries} == {8 * 8 + prefix}, arm   # 64x64, 8-pixel patches
    summary = (arms_suite.work_dir / 'attention' / 'attention.md').read_text()
    assert 'tokens: plain 65, +CB(mlp) 65, +reg4 69, +CB(mlp)+reg4 69' in summary


def test_each_run_records_what_its_arm_changes(arms_suite):
    (run,) = [r for r in recorded_runs(arms_suite.work_dir, 'two-stage')
              if 'cb-reg4' in str(r.path) and r.path.name == 'seed0']
    backbone = RunDir(run.path).config()['model']['backbone']
    assert backbone['cb'] is True and backbone['timm_kwargs'] == dict(reg_tokens=4)
