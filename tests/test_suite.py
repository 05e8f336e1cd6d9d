"""The main job: both stages, each downstream arm from its own upstream checkpoint, a quiet
console, resumable after an interruption, and a report."""
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from helpers import (REPO, SEG, SEG_ITERS, copy_runs, evaluations, finish, kill_after,
                     recorded_runs, reduced_suite, run, start, suite_command)
from mmengine.config import Config

from cb_transfer.robustness.metrics import is_robustness
from cb_transfer.run_dir import RunDir
from cb_transfer.suite import main as suite_main

FULL = REPO / 'configs' / 'suites' / 'full.py'


def rows(work_dir: Path) -> list:
    return json.loads((work_dir / 'results.json').read_text())


def run_dirs(work_dir: Path, stage: str) -> list:
    return [r.path for r in recorded_runs(work_dir, stage)]


def dumped_config(run_dir: Path) -> Config:
    return Config.fromfile(str(RunDir(run_dir).config_file()))


def test_the_reduced_default_suite_runs_both_stages_with_two_pairs(local_suite):
    console, work_dir = local_suite.console, local_suite.work_dir
    assert ('16 runs (4 pretraining: 2 pairs (seeds 0, 1); 8 fine-tuning: 4 configs x 2 pairs x '
            '1 seed; 4 robustness evaluations (a subset: gaussian_noise, fog at severity 3, and '
            'clean))') in console
    assert '16 runs to go, 2 at a time, 1 thread each' in console
    assert console.count(': done in ') == 16 and 'FAILED' not in console
    table = rows(work_dir)
    assert [(r['task'], r['metric'], r['protocol']) for r in table] == [
        ('classification', 'accuracy/top1', 'pretraining'),
        ('segmentation', 'mIoU', 'two-stage'),
        ('segmentation', 'mIoU/corrupted (2x1 subset)', 'two-stage'),
        ('segmentation', 'mIoU/relative (2x1 subset)', 'two-stage'),
        ('detection', 'coco/bbox_mAP', 'two-stage'), ('detection', 'coco/segm_mAP', 'two-stage')]
    for row in table:  # the interval is over the two pairs
        assert row['control_n'] == row['treatment_n'] == 2 and row['gain']['delta'] is not None
        assert row['gain']['units'] == 2 and not row['gain']['conditional']
        gain = row['gain']
        assert gain['level'] == 'pairs' and 'over 2 pretraining pairs' in gain['method']
    assert (work_dir / 'results.md').read_text() in console
    assert len(run_dirs(work_dir, 'upstream')) == 4 and len(run_dirs(work_dir, 'two-stage')) == 8
    assert {p.name for p in (work_dir / 'two-stage').glob('*/*')} == {'pair0', 'pair1'}


def test_each_fine_tuning_run_starts_from_its_own_pairs_checkpoint(local_suite):
    """Asserted on the records (and the configs the runs dumped), and on the hashes the table
    reports."""
    work_dir = local_suite.work_dir
    upstream = {}
    for run_dir in recorded_runs(work_dir, 'upstream'):
        record = run_dir.record
        p = record.provenance
        checkpoint = record.final_checkpoint
        upstream[(p.arm, p.pair)] = (
            checkpoint, hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest())
        assert p.pair == p.seed and p.weights is None  # from scratch
        assert dumped_config(run_dir.path).model.backbone.init_cfg is None
    assert len({sha for _, sha in upstream.values()}) == 4
    for run_dir in recorded_runs(work_dir, 'two-stage'):
        p = run_dir.record.provenance
        checkpoint, sha = upstream[(p.arm, p.pair)]
        assert run_dir.path.parent.name == f'pair{p.pair}'
        assert p.weights.path == checkpoint and p.weights.sha256 == sha
        assert p.weights.upstream_run.endswith(f'/seed{p.pair}')
        assert p.weights.pretrained_arm == ('+CB(mlp)' if p.arm == 'cb' else 'plain')
        assert p.change == p.weights.pretrained_arm and p.protocol == 'two-stage'
        cfg = dumped_config(run_dir.path)
        assert cfg.protocol == 'two-stage' and cfg.model.backbone.cb is (p.arm == 'cb')
        assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint=checkpoint)
    for row in rows(work_dir)[1:]:
        for arm, column in (('plain', 'control_weights'), ('cb', 'treatment_weights')):
            assert row[column] == ', '.join(sorted(
                f'{Path(c).name} ({sha[:8]})' for (a, _), (c, sha) in upstream.items()
                if a == arm))
    assert '| classification | pretraining |' in (work_dir / 'results.md').read_text()


def test_the_table_equals_the_numbers_computed_by_hand_from_the_logs(local_suite):
    """Each row's gain is the mean over pairs of the paired differences (one seed a pair
    here), its interval a t interval over the pairs."""
    by_hand = {}
    for run_dir in recorded_runs(local_suite.work_dir):
        p = run_dir.record.provenance
        evals = evaluations(run_dir.path)
        last = evals[max(evals)]
        for metric, scale in (('accuracy/top1', 1), ('mIoU', 1), ('coco/bbox_mAP', 100),
                              ('coco/segm_mAP', 100)):
            if metric in last:
                by_hand.setdefault((metric, p.arm), {})[p.pair] = last[metric] * scale
    for row in rows(local_suite.work_dir):
        if is_robustness(row['metric']):
            continue  # test_robustness.py computes those by hand
        plain, cb = by_hand[(row['metric'], 'plain')], by_hand[(row['metric'], 'cb')]
        differences = [cb[pair] - plain[pair] for pair in sorted(plain)]
        assert row['control_mean'] == pytest.approx(np.mean(list(plain.values())))
        assert row['treatment_std'] == pytest.approx(np.std(list(cb.values()), ddof=1))
        assert row['gain']['delta'] == pytest.approx(np.mean(differences))
        assert row['gain']['replicates'] == pytest.approx(differences)
        if np.ptp(differences) > 1e-9:
            ci = stats.ttest_1samp(differences, 0.0).confidence_interval()
            assert (row['gain']['ci_low'], row['gain']['ci_high']) == pytest.approx(
                (ci.low, ci.high))
    report = (local_suite.work_dir / 'report.md').read_text()
    assert ('| two-stage | +CB(mlp) | about the change | clean | all tasks | '
            '3 (3 with intervals) |') in report
    assert '## Design: where the noise is' in report and '| 2 x 1 |' in report


def test_the_console_is_quiet_and_each_run_log_holds_the_rest(local_suite):
    seen = local_suite.console + local_suite.stderr
    for text in ('Warning', 'warnings.warn', 'Average Precision', 'mmengine - INFO', 'Traceback'):
        assert text not in seen, text
    logs = {run: (run / 'suite_run.log').read_text() for run in run_dirs(local_suite.work_dir, '*')}
    for run, log in logs.items():
        assert f'log: {run / "suite_run.log"}' in local_suite.console
        assert 'mmengine - INFO' in log  # mmengine's own log lines
        if 'mask-rcnn' in run.parent.name:  # pycocotools' printed tables
            assert 'Average Precision  (AP) @[ IoU=0.50:0.95' in log
        if 'upernet' in run.parent.name:  # mmseg's warnings, every run its own
            assert "UserWarning: ``build_loss`` would be deprecated" in log
    assert f'iter {SEG_ITERS}/{SEG_ITERS}' in local_suite.console
    # tqdm's meter over all runs: done, elapsed < time left
    assert re.search(r'suite: +\d+%\|.*\| \d+/\d+ \[\d+:\d+<\d+:\d+', local_suite.console)


def run_suite_here(args, cwd, monkeypatch, capfd) -> tuple:
    """``cb-run-suite ARGS`` in this process (for what needs no training): (exit code, console)."""
    monkeypatch.chdir(cwd)
    code = suite_main([str(a) for a in args])
    return code, capfd.readouterr().out


def test_dry_run_shows_the_design_once_a_pilot_exists(local_suite, monkeypatch, capfd):
    code, out = run_suite_here([local_suite.suite, '--work-dir', local_suite.work_dir,
                                '--dry-run', '--target-gain', 1.0], local_suite.cwd,
                               monkeypatch, capfd)
    assert code == 0 and all(line.startswith('[done] ') for line in out.splitlines()
                             if line.startswith('[') and ' two-stage/' in line)
    assert 'design, from the runs already in' in out and 'planned 2 pairs x 1 seeds' in out
    assert 'cheapest design for +1.00' in out and 'UPerNet deit_tiny' in out
    assert 'CPU-h' in out  # what a pair and a seed cost, from the records


def test_an_interrupted_suite_resumes_to_the_same_numbers(local_suite, tmp_path):
    """Killed (the whole process group, SIGKILL) after a fine-tuning run's first checkpoint;
    started again, it skips the finished runs, resumes that one and ends with the uninterrupted
    suite's numbers. (The pretraining runs are the session suite's, copied: finished runs; one
    fine-tuning arm, seed 0.)"""
    cwd = local_suite.cwd
    suite = reduced_suite(tmp_path, 'seg_only', detection=False)
    suite.write_text(suite.read_text() + 'upstream_seeds = [0]\nseeds = [0]\ndownstream = ['
                     f"dict(plain={SEG[0]!r}, weights=dict(plain='vit_tiny.plain'))]\n")
    work_dir = tmp_path / 'interrupted'
    copy_runs(local_suite.work_dir, work_dir, 'upstream')
    cmd = suite_command(suite, work_dir, '--jobs', 1, '--threads', 1)  # in this process
    kill_after(start(cmd, cwd), work_dir / 'two-stage' / Path(SEG[0]).stem / 'pair0' / 'seed0',
               'iter_10.pth')
    finished = run_dirs(work_dir, 'upstream')
    assert len(finished) == 4  # the session suite's two pairs; this suite uses the first
    stamps = {p: (p / 'record.json').stat().st_mtime_ns for p in finished}

    out = run(cmd, cwd).stdout
    assert '3 runs (2 pretraining: 1 pair (seeds 0); 1 fine-tuning' in out
    assert '1 run to go' in out
    assert f'two-stage/{Path(SEG[0]).stem}/pair0/seed0: resuming from iter_10.pth' in out
    assert {p: (p / 'record.json').stat().st_mtime_ns for p in finished} == stamps
    expected = {r['metric']: r for r in rows(local_suite.work_dir)}
    (seg,) = [r for r in rows(work_dir) if r['metric'] == 'mIoU']
    assert seg['control_values'] == expected['mIoU']['control_values'][:1]


def test_dry_run_of_the_full_preset_lists_every_run_and_touches_nothing(
        tmp_path, monkeypatch, capfd):
    before = set(tmp_path.rglob('*'))
    code, out = run_suite_here([FULL, '--dry-run', '--launcher', 'pytorch', '--gpus', '8'],
                               tmp_path, monkeypatch, capfd)
    assert code == 0 and set(tmp_path.rglob('*')) == before
    lines = [line for line in out.splitlines() if line.startswith('[new] ')]
    assert len(lines) == 14 + 86 + 86  # pretraining, fine-tuning, robustness
    assert all('-m torch.distributed.run' in line and '--nproc_per_node=8' in line
               and '-m cb_transfer.suite.job' in line and str(FULL) in line for line in lines)
    names = [line.split()[1].rstrip(':') for line in lines]
    assert len({name.split('/')[1] for name in names}) == 6 + 28
    for line, name in zip(lines, names):
        assert f'--run-name {name} --launcher pytorch' in line
        if name.startswith('upstream/'):
            assert '(weights:' not in line.split(':')[0]
        elif name.endswith('/robustness'):  # the run it evaluates, once it has finished
            assert f'(weights: <last checkpoint of {name[:-len("/robustness")]}>)' in line
        else:  # each arm from its own pair's pretraining run of its kind, resolved when it starts
            arm = '-cb' if '-cb_' in name else ''
            pair = name.split('/')[2][len('pair'):]
            assert f'(weights: <last checkpoint of upstream/deit-' in line
            assert f'{arm}_8xb128-300e_in1k-224/seed{pair}>)' in line
    assert 'missing inputs' in out and 'data/imagenet/train' in out
    assert 'pretrain/' not in out  # the checkpoints come from the pretraining runs


def test_a_full_size_suite_stops_before_anything_when_inputs_are_missing(
        tmp_path, monkeypatch, capfd):
    suite = tmp_path / 'one_pair.py'
    suite.write_text(
        "downstream = [dict(plain='configs/coco/mask-rcnn_deit-s16_fpn_8xb2-1x_coco.py',\n"
        "                   cb='configs/coco/mask-rcnn_deit-s16-cb_fpn_8xb2-1x_coco.py')]\n"
        "seeds = [0]\n")
    code, out = run_suite_here([suite], tmp_path, monkeypatch, capfd)
    assert code == 1 and 'missing inputs; nothing was started' in out
    assert 'data/coco/annotations/instances_train2017.json  (needed by 2 configs' in out
    assert 'pretrain/deit-s16-cb_8xb128-300e_in1k-224.pth  (needed by 1 config' in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ['one_pair.py']


def test_without_slurm_the_launcher_is_a_clear_error(tmp_path, local_suite, monkeypatch, capfd):
    monkeypatch.setenv('PATH', str(tmp_path))  # no sbatch, scontrol, scancel here
    code, out = run_suite_here([local_suite.suite, '--work-dir', tmp_path / 'wd', '--launcher',
                                'slurm'], local_suite.cwd, monkeypatch, capfd)
    assert code == 2
    assert "--launcher slurm needs Slurm's sbatch, scontrol, scancel on the PATH" in out
    assert 'nothing runs here instead' in out and not (tmp_path / 'wd').exists()


def assert_weights_are_the_records(work_dir: Path) -> None:
    """Every row names, for each arm, the file its runs' records name and the first 8 hex digits
    of that file's real SHA-256 (or 'from scratch'); each two-stage arm its own upstream run."""
    records = {r.path: r.record for r in recorded_runs(work_dir)}
    for row in rows(work_dir):
        for arm, column in (('plain', 'control_weights'), ('cb', 'treatment_weights')):
            sources = set()
            for path, record in records.items():
                p = record.provenance
                if p.stage != 'downstream' or p.arm != arm or p.protocol != row['protocol'] or \
                        row['task'] != 'segmentation':
                    continue
                if p.weights is None:
                    sources.add('from scratch')
                    continue
                sha = hashlib.sha256(Path(p.weights.path).read_bytes()).hexdigest()
                assert p.weights.sha256 == sha
                upstream = RunDir(work_dir / p.weights.upstream_run).record
                assert upstream.provenance.arm == arm
                assert upstream.final_checkpoint == p.weights.path
                sources.add(f'{p.weights.file} ({sha[:8]})')
            if row['task'] == 'segmentation':
                assert row[column] == ', '.join(sorted(sources)), (row, arm)
        if row['protocol'] == 'from-scratch':
            assert row['control_weights'] == row['treatment_weights'] == 'from scratch'


def test_the_weights_column_is_the_record_of_every_run(local_suite):
    assert_weights_are_the_records(local_suite.work_dir)


def test_two_invocations_on_one_work_dir_share_the_runs_and_both_report_them(local_suite,
                                                                              tmp_path):
    """Started together, each in one process (--jobs 1): each run is claimed by one of them,
    the other waits for it, both end well with the same table, and every weights cell is the
    record's (a two-stage and a from-scratch row; the pretraining runs are the session suite's,
    copied)."""
    cwd = local_suite.cwd
    suite = reduced_suite(tmp_path, 'shared', detection=False, extra=f'''
        upstream_seeds = [0]
        seeds = [0]
        downstream = [dict(plain={SEG[0]!r}, cb={SEG[1]!r}, weights='vit_tiny'),
                      dict(plain={SEG[0]!r}, cb={SEG[1]!r})]
        cfg_options.update({{k: dict(v, **{{'train_cfg.max_iters': 30,
                                             'param_scheduler.1.end': 30,
                                             'train_cfg.val_interval': 30}})
                             for k, v in cfg_options.items() if 'upernet' in k}})
        ''')
    work_dir = tmp_path / 'shared'
    copy_runs(local_suite.work_dir, work_dir, 'upstream')
    cmd = suite_command(suite, work_dir, '--jobs', 1, '--threads', 1)
    first, second = start(cmd, cwd), start(cmd, cwd)
    outs = [finish(first).stdout, finish(second).stdout]
    assert all('4 runs to go' in out for out in outs)
    assert sum(out.count(': done in ') for out in outs) == 4
    assert any(': held by ' in out and 'waiting for it' in out for out in outs)
    assert rows(work_dir) and all(
        (work_dir / 'results.md').read_text() in out for out in outs[-1:])
    tables = [out.split('| task |', 1)[1].split('\n\n')[0] for out in outs]
    assert tables[0] == tables[1]
    assert {(r['protocol'], r['control_n'], r['treatment_n']) for r in rows(work_dir)
            if r['task'] == 'segmentation'} == {('two-stage', 1, 1), ('from-scratch', 1, 1)}
    assert_weights_are_the_records(work_dir)
    assert not list(work_dir.rglob('claim.json'))  # every claim given up


def test_a_run_that_failed_before_its_first_checkpoint_is_moved_aside_with_its_log(
        smoke_cwd, tmp_path):
    plain_only = f"downstream = [dict(plain={SEG[0]!r})]\nseeds = [0]\nsmoke_data = True\n"
    broken = tmp_path / 'broken.py'
    broken.write_text(plain_only + f"cfg_options = {{{SEG[0]!r}: "
                      "{'model.backbone.cb_position': 'ffn'}}\n")
    work_dir = tmp_path / 'wd'
    out = run(suite_command(broken, work_dir, '--jobs', 1), smoke_cwd, check=False).stdout
    run_dir = work_dir / 'from-scratch' / Path(SEG[0]).stem / 'seed0'
    assert 'FAILED (ValueError: ' in out and "cb_position='ffn' is not one of" in out
    assert "cb_position='ffn' is not one of" in (run_dir / 'suite_run.log').read_text()

    fixed = tmp_path / 'fixed.py'
    fixed.write_text(plain_only + f"cfg_options = {{{SEG[0]!r}: "
                     "{'train_cfg.max_iters': 30, 'param_scheduler.1.end': 30, "
                     "'train_cfg.val_interval': 30}}\n")
    out = run(suite_command(fixed, work_dir, '--jobs', 1), smoke_cwd).stdout
    moved = run_dir / 'attempts' / '1'
    assert (f'starting afresh (the earlier attempt, which left no checkpoint, moved to {moved})'
            in out)
    assert "cb_position='ffn' is not one of" in (moved / 'suite_run.log').read_text()
    assert RunDir(run_dir).done
    assert [r['control_n'] for r in rows(work_dir)] == [1]
