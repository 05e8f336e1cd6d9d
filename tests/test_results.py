"""cb_transfer.results: collecting runs, pairing arms, statistics and the table's outputs."""
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from scipy import stats

from cb_transfer.results import (build_table, collect_runs, gain, paired_gain, read_run_dirs,
                                 summarize, unpaired_gain)
from cb_transfer.results.cli import main as tabulate
from cb_transfer.results.outputs import write_suite_outputs
from cb_transfer.results.table import to_markdown
from cb_transfer.experiment import identify
from cb_transfer.record import Cost, Provenance, RunRecord, Weights
from cb_transfer.run_dir import RunDir

# ---------------------------------------------------------------- statistics against scipy

PLAIN = [42.1, 42.9, 42.4, 43.3, 42.0]
CB = [42.6, 43.1, 43.0, 43.9, 42.2]


def test_summary_matches_numpy():
    s = summarize(PLAIN)
    assert s.n == 5
    assert s.mean == pytest.approx(np.mean(PLAIN))
    assert s.std == pytest.approx(np.std(PLAIN, ddof=1))
    assert summarize([1.0]).std is None and summarize([]).mean is None


def test_paired_interval_matches_scipy():
    g = paired_gain(dict(enumerate(PLAIN)), dict(enumerate(CB)))
    ci = stats.ttest_rel(CB, PLAIN).confidence_interval(0.95)
    assert g.delta == pytest.approx(np.mean(np.subtract(CB, PLAIN)))
    assert (g.ci_low, g.ci_high) == pytest.approx((ci.low, ci.high))
    assert 'paired' in g.method


def test_unpaired_welch_interval_matches_scipy():
    cb = CB[:3] + [45.0]
    g = unpaired_gain(PLAIN, cb)
    ci = stats.ttest_ind(cb, PLAIN, equal_var=False).confidence_interval(0.95)
    assert g.delta == pytest.approx(np.mean(cb) - np.mean(PLAIN))
    assert (g.ci_low, g.ci_high) == pytest.approx((ci.low, ci.high))
    assert 'Welch' in g.method


def test_gain_pairs_by_seed_only_when_seeds_match():
    def scratch(*runs):  # runs from scratch: each seed is its own unit
        return [(seed, seed, value) for seed, value in runs]
    paired = gain(scratch((0, 1.0), (1, 2.0), (2, 3.5)), scratch((2, 4.0), (0, 1.5), (1, 2.2)),
                  units_are_pairs=False)
    assert 'paired' in paired.method and paired.delta == pytest.approx((0.5 + 0.2 + 0.5) / 3)
    unpaired = gain(scratch((0, 1.0), (1, 2.0)), scratch((5, 1.5), (6, 2.5)))
    assert 'Welch' in unpaired.method and unpaired.delta == pytest.approx(0.5)
    single = gain(scratch((0, 1.0)), scratch((0, 1.4)))
    assert single.delta == pytest.approx(0.4) and single.ci_low is None


# ---------------------------------------------------------------- work_dirs written by hand

def config(task='segmentation', cb=False, seed=0, arch='deit_small_patch16_224', iters=1000,
           **backbone):
    if task == 'segmentation':
        model = dict(type='EncoderDecoder', decode_head=dict(type='UPerHead', num_classes=150),
                     backbone=dict(type='cb_transfer.ViT', arch=arch, cb=cb, **backbone))
        data = dict(type='ADE20KDataset', data_root='data/ade')
        scope = 'mmseg'
    else:
        model = dict(type='MaskRCNN', backbone=dict(type='cb_transfer.ViT', arch=arch, cb=cb,
                                                    **backbone))
        data = dict(type='CocoDataset', data_root='data/coco')
        scope = 'mmdet'
    return dict(default_scope=scope, model=model, randomness=dict(seed=seed),
                train_dataloader=dict(batch_size=2, num_workers=4, dataset=data),
                train_cfg=dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=500),
                optim_wrapper=dict(optimizer=dict(type='AdamW', lr=6e-5)))


def write_run(work_dir, cfg, evals, timestamp='20260101_000000', last_train_step=None,
              extra_lines=()):
    """Write what mmengine writes: <work_dir>/<timestamp>/vis_data/{config.py,scalars.json}."""
    vis = work_dir / timestamp / 'vis_data'
    vis.mkdir(parents=True)
    Config(cfg).dump(str(vis / 'config.py'))
    lines = []
    steps = sorted(evals)
    last = last_train_step or cfg['train_cfg']['max_iters']
    for step in range(100, last + 1, 100):
        lines.append(json.dumps(dict(lr=1e-4, loss=1.0 / step, step=step)))
        if step in evals:
            lines.append(json.dumps(dict(**evals[step], data_time=0.01, time=0.1, step=step)))
    assert all(s <= last for s in steps)
    (vis / 'scalars.json').write_text('\n'.join(lines + list(extra_lines)) + '\n')


@pytest.fixture
def sweep(tmp_path):
    """UPerNet plain and +CB, three seeds each, and Mask R-CNN plain and +CB, two seeds."""
    seg = {(False, 0): 42.0, (False, 1): 42.6, (False, 2): 41.8,
           (True, 0): 42.9, (True, 1): 43.0, (True, 2): 42.1}
    for (cb, seed), miou in seg.items():
        write_run(tmp_path / f'seg_cb{cb}_s{seed}', config(cb=cb, seed=seed),
                  {500: dict(mIoU=miou - 5, aAcc=70.0), 1000: dict(mIoU=miou, aAcc=80.0)})
    det = {(False, 0): (0.401, 0.370), (False, 1): (0.405, 0.372),
           (True, 0): (0.410, 0.371), (True, 1): (0.409, 0.380)}
    for (cb, seed), (box, mask) in det.items():
        write_run(tmp_path / f'det_cb{cb}_s{seed}', config('detection', cb=cb, seed=seed),
                  {1000: {'coco/bbox_mAP': box, 'coco/segm_mAP': mask}})
    return tmp_path, seg, det


def rows_by(table):
    return {(r.task, r.metric): r for r in table.rows}


def test_runs_go_to_the_right_arms_with_the_right_numbers(sweep):
    root, seg, det = sweep
    runs, problems = collect_runs([root])
    assert problems == [] and len(runs) == 10
    rows = rows_by(build_table(runs))
    miou = rows[('segmentation', 'mIoU')]
    assert (miou.control_n, miou.treatment_n) == (3, 3)
    plain = [seg[(False, s)] for s in range(3)]
    cb = [seg[(True, s)] for s in range(3)]
    assert miou.control_mean == pytest.approx(np.mean(plain))
    assert miou.treatment_std == pytest.approx(np.std(cb, ddof=1))
    assert miou.gain.delta == pytest.approx(np.mean(np.subtract(cb, plain)))
    ci = stats.ttest_rel(cb, plain).confidence_interval()
    assert (miou.gain.ci_low, miou.gain.ci_high) == pytest.approx((ci.low, ci.high))
    assert (miou.dataset, miou.model, miou.arch, miou.schedule) == (
        'ADE20K', 'UPerNet', 'deit_small_patch16_224', '1k')
    box = rows[('detection', 'coco/bbox_mAP')]
    # mmdet logs fractions; the table is in percent
    assert box.control_mean == pytest.approx(40.3)
    assert box.gain.delta == pytest.approx(((41.0 - 40.1) + (40.9 - 40.5)) / 2)
    assert box.treatment_seeds == [0, 1]


def test_best_instead_of_last(sweep):
    root, _, _ = sweep
    write_run(root / 'late_drop', config(cb=True, seed=3),
              {500: dict(mIoU=50.0), 1000: dict(mIoU=30.0)})
    runs, _ = collect_runs([root])
    last = rows_by(build_table(runs))[('segmentation', 'mIoU')]
    best = rows_by(build_table(runs, best=True))[('segmentation', 'mIoU')]
    assert last.treatment_n == best.treatment_n == 4
    assert best.treatment_mean - last.treatment_mean == pytest.approx((50.0 - 30.0) / 4)
    assert best.selection == 'best'


def test_arms_that_differ_in_more_than_cb_are_not_paired(tmp_path):
    write_run(tmp_path / 'a', config(cb=False, seed=0), {1000: dict(mIoU=40.0)})
    other = config(cb=True, seed=0)
    other['optim_wrapper']['optimizer']['lr'] = 1e-4  # another recipe
    write_run(tmp_path / 'b', other, {1000: dict(mIoU=41.0)})
    table = build_table(collect_runs([tmp_path])[0])
    assert len(table.rows) == 2
    assert all(r.gain.delta is None for r in table.rows)


def test_bookkeeping_and_the_checkpoint_path_do_not_split_arms(tmp_path):
    plain = config(cb=False, seed=0, init_cfg=dict(type='Pretrained', checkpoint='deit.pth'))
    cb = config(cb=True, seed=0, init_cfg=dict(type='Pretrained', checkpoint='deit_cb.pth'))
    cb['train_dataloader']['num_workers'] = 0
    cb['work_dir'] = '/elsewhere'
    write_run(tmp_path / 'a', plain, {1000: dict(mIoU=40.0)})
    write_run(tmp_path / 'b', cb, {1000: dict(mIoU=41.0)})
    (row,) = build_table(collect_runs([tmp_path])[0]).rows
    assert row.gain.delta == pytest.approx(1.0)


def test_timm_changes_are_arms_and_a_factorial_gets_its_interaction_row(tmp_path):
    reg = dict(timm_kwargs=dict(reg_tokens=4))
    for seed, (plain, cb, registers, both) in enumerate([(40.0, 41.0, 42.0, 42.5),
                                                         (41.0, 41.5, 43.0, 44.0)]):
        write_run(tmp_path / f'plain{seed}', config(seed=seed), {1000: dict(mIoU=plain)})
        write_run(tmp_path / f'cb{seed}', config(cb=True, seed=seed), {1000: dict(mIoU=cb)})
        write_run(tmp_path / f'reg{seed}', config(seed=seed, **reg), {1000: dict(mIoU=registers)})
        write_run(tmp_path / f'both{seed}', config(cb=True, seed=seed, **reg),
                  {1000: dict(mIoU=both)})
    rows = {r.arm: r for r in build_table(collect_runs([tmp_path])[0]).rows}
    interaction = '+CB(mlp)+reg4 vs +CB(mlp) and +reg4 (interaction)'
    assert sorted(rows) == sorted(['+CB(mlp)', '+reg4', '+CB(mlp)+reg4', interaction])
    assert rows['+reg4'].gain.delta == pytest.approx(np.mean([2.0, 2.0]))
    # (AB - A) - (B - plain) per seed: (42.5 - 41) - (42 - 40) = -0.5; (44 - 41.5) - 2 = 0.5
    assert rows[interaction].gain.replicates == pytest.approx([-0.5, 0.5])
    assert rows[interaction].contrast == 'interaction' and rows[interaction].gain.delta == 0.0


def test_one_arm_has_one_label_however_it_is_spelled_and_values_tell_arms_apart():
    from cb_transfer.experiment import arm_label, arm_options

    def label(**backbone):
        return arm_label(arm_options(dict(model=dict(backbone=backbone))))
    assert label(cb=True) == label(cb=True, cb_position='mlp', cb_scaled=False) == '+CB(mlp)'
    assert label(timm_kwargs=dict(qk_norm=False, reg_tokens=0)) == label() == 'plain'
    assert label(cb=False, cb_position='attn') == 'plain'
    assert label(timm_kwargs=dict(init_values=1e-5)) != label(timm_kwargs=dict(init_values=1e-6))
    assert label(cb=True, cb_layers=(1, 2), timm_kwargs=dict(reg_tokens=4)) == \
        '+CB(mlp, layers [1, 2])+reg4'


def test_without_a_plain_arm_the_control_is_the_arm_every_other_shares(tmp_path):
    reg = dict(timm_kwargs=dict(reg_tokens=4))
    write_run(tmp_path / 'reg', config(**reg), {1000: dict(mIoU=42.0)})
    write_run(tmp_path / 'both', config(cb=True, **reg), {1000: dict(mIoU=42.5)})
    (row,) = build_table(collect_runs([tmp_path])[0]).rows
    assert (row.arm, row.control, row.gain.delta) == ('+CB(mlp)+reg4', '+reg4', pytest.approx(0.5))
    assert '| +CB(mlp)+reg4 vs +reg4 |' in to_markdown(build_table(collect_runs([tmp_path])[0]))


def test_cb_variants_are_separate_rows_against_one_plain_arm(tmp_path):
    write_run(tmp_path / 'plain', config(), {1000: dict(mIoU=40.0)})
    write_run(tmp_path / 'mlp', config(cb=True), {1000: dict(mIoU=41.0)})
    write_run(tmp_path / 'attn', config(cb=True, cb_position='attn'), {1000: dict(mIoU=39.0)})
    rows = build_table(collect_runs([tmp_path])[0]).rows
    assert {(r.arm, r.gain.delta) for r in rows} == {('+CB(mlp)', 1.0), ('+CB(attn)', -1.0)}


def test_a_resumed_run_is_one_run(tmp_path):
    work_dir = tmp_path / 'resumed'
    write_run(work_dir, config(), {500: dict(mIoU=30.0)}, timestamp='20260101_000000',
              last_train_step=600)
    write_run(work_dir, config(), {1000: dict(mIoU=40.0)}, timestamp='20260102_000000')
    runs, problems = collect_runs([tmp_path])
    assert problems == [] and len(runs) == 1
    assert sorted(runs[0].evaluations) == [500, 1000] and runs[0].complete
    assert runs[0].metric('mIoU') == 40.0


def test_legacy_log_json_is_read(tmp_path):
    """An mmseg 0.x log: env_info/config first line, mode keys, fractions."""
    cfg_text = Config(dict(
        model=dict(type='EncoderDecoder', backbone=dict(type='VisionTransformer', embed_dims=384),
                   decode_head=dict(type='UPerHead')),
        data=dict(train=dict(type='ADE20KDataset')),
        runner=dict(type='IterBasedRunner', max_iters=160000))).pretty_text
    lines = [dict(env_info='sys.platform: linux', config=cfg_text, seed=0),
             dict(mode='train', epoch=1, iter=50, lr=6e-5, loss=3.2),
             dict(mode='val', epoch=1, iter=160000, lr=0.0, aAcc=0.80, mIoU=0.4287, mAcc=0.54)]
    (tmp_path / '20210101_000000.log.json').write_text('\n'.join(map(json.dumps, lines)))
    runs, problems = collect_runs([tmp_path])
    assert problems == []
    (run,) = runs
    assert (run.task, run.dataset, run.model, run.schedule, run.seed) == (
        'segmentation', 'ADE20K', 'UPerNet', '160k', 0)
    assert run.arch == 'VisionTransformer(embed_dims=384)'
    assert run.metric('mIoU') == pytest.approx(42.87)


# ---------------------------------------------------------------- bad input

def test_a_corrupt_line_is_reported_and_skipped(tmp_path):
    write_run(tmp_path / 'a', config(), {1000: dict(mIoU=40.0)},
              extra_lines=['{"mIoU": 99.0, "step": 10', 'garbage'])
    runs, problems = collect_runs([tmp_path])
    assert len(problems) == 2
    assert problems[0].endswith('scalars.json:12: corrupt or truncated line skipped '
                                '(Expecting \',\' delimiter)')
    assert runs[0].metric('mIoU') == 40.0  # not 99


def test_runs_without_evaluation_or_unfinished_are_listed_not_tabulated(tmp_path):
    write_run(tmp_path / 'done', config(), {1000: dict(mIoU=40.0)})
    write_run(tmp_path / 'no_eval', config(seed=1), {})
    write_run(tmp_path / 'killed', config(seed=2), {500: dict(mIoU=20.0)}, last_train_step=600)
    table = build_table(*collect_runs([tmp_path]))
    (row,) = table.rows
    assert row.control_n == 1 and row.control_mean == 40.0
    notes = '\n'.join(table.notes)
    assert 'no_eval (no evaluation logged)' in notes
    assert 'killed (trained to iteration 600 of 1000)' in notes


def record(work_dir: Path, seed: int, weights=None, metrics=None) -> None:
    """The record a suite writes when a run is done (what the run is: from its dumped config,
    as the suite's writer takes it from the config it ran)."""
    found = identify(RunDir(work_dir).config())
    RunDir(work_dir).write_record(RunRecord(
        name=work_dir.name, suite='test', config='config.py', provenance=Provenance(
            stage='downstream', protocol=found['protocol'], arm='plain', pair=None, seed=seed,
            weights=Weights(**weights) if weights else None, change=found['arm'],
            backbone=found['arm_options'], experiment=found['experiment'],
            **{k: found[k] for k in ('task', 'dataset', 'model', 'arch', 'schedule')}),
        final_checkpoint=str(work_dir / 'iter_1000.pth'), iterations=1000, evaluations=1,
        metrics=metrics or {}, cost=Cost(processes=1, device='cpu'), launcher='none',
        host='here', finished_at='now'))


def test_a_recorded_run_names_the_weights_of_its_record_and_others_are_judged_by_logs(tmp_path):
    weights = dict(file='epoch_12.pth', path='/x/epoch_12.pth', sha256='0123abcd' + '0' * 56,
                   pretrained_arm='plain', upstream_run='upstream/x/seed0')
    plain = config(cb=False, seed=0, init_cfg=dict(type='Pretrained', checkpoint='a.pth'))
    write_run(tmp_path / 'recorded', plain, {1000: dict(mIoU=40.0)})
    record(tmp_path / 'recorded', 0, weights)
    write_run(tmp_path / 'by_logs', config(cb=True, seed=0, init_cfg=dict(
        type='Pretrained', checkpoint='b.pth')), {1000: dict(mIoU=41.0)})
    runs, problems = read_run_dirs([tmp_path / 'recorded', tmp_path / 'by_logs'])
    table = build_table(runs, problems)
    (row,) = table.rows
    assert row.control_weights == 'epoch_12.pth (0123abcd)'
    assert row.treatment_weights == 'b.pth (no run record: hash unknown)'
    assert any(note.startswith('1 run without a run record, judged finished by their logs')
               and note.endswith('by_logs') for note in table.notes)


def test_an_arm_started_from_weights_pretrained_as_another_arm_gets_a_note(tmp_path):
    """Two-stage: each arm from a checkpoint of its own arm; a register arm started from a
    checkpoint its record says was pretrained as the plain arm is named under the table."""
    for name, backbone, pretrained in (('plain', {}, 'plain'),
                                       ('reg4', dict(timm_kwargs=dict(reg_tokens=4)), 'plain')):
        cfg = dict(config(seed=0, init_cfg=dict(type='Pretrained', checkpoint=f'{name}.pth'),
                          **backbone), protocol='two-stage')
        write_run(tmp_path / name, cfg, {1000: dict(mIoU=40.0)})
        record(tmp_path / name, 0, dict(file=f'{name}.pth', path=f'/x/{name}.pth',
                                        sha256=name.ljust(64, '0'), pretrained_arm=pretrained))
    table = build_table(*read_run_dirs([tmp_path / 'plain', tmp_path / 'reg4']))
    (row,) = table.rows
    assert row.arm == '+reg4'
    wrong = [n for n in table.notes if 'started from weights pretrained as' in n]
    assert len(wrong) == 1 and 'the +reg4 arm started from weights pretrained as plain' in wrong[0]


def test_the_suite_outputs_list_the_runs_not_finished_and_leave_them_out(tmp_path):
    write_run(tmp_path / 'done', config(), {1000: dict(mIoU=40.0)})
    record(tmp_path / 'done', 0)
    runs, problems = read_run_dirs([tmp_path / 'done'])
    written, tabulated = write_suite_outputs(tmp_path, runs, problems, pending=['killed'])
    (row,) = json.loads(written['results.json'].read_text())
    assert tabulated and row['control_n'] == 1 and row['control_mean'] == 40.0
    assert 'Not finished (1), not in the table:\n- killed' in written['results.md'].read_text()
    assert '- killed' in written['report.md'].read_text()


def test_nan_is_flagged_and_left_out(tmp_path):
    write_run(tmp_path / 'a', config(seed=0), {1000: dict(mIoU=40.0)})
    write_run(tmp_path / 'b', config(seed=1), {1000: dict(mIoU=float('nan'))})
    table = build_table(*collect_runs([tmp_path]))
    assert table.rows[0].control_n == 1 and table.rows[0].control_mean == 40.0
    assert any('mIoU is NaN' in n for n in table.notes)


def test_a_missing_arm_shows_as_empty(tmp_path, capsys):
    write_run(tmp_path / 'cb', config(cb=True), {1000: dict(mIoU=41.0)})
    assert tabulate([str(tmp_path), '--format', 'json']) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row['control_n'] == 0 and row['control_mean'] is None and row['gain']['delta'] is None
    assert row['treatment_mean'] == 41.0


def test_exits_non_zero_only_when_nothing_is_tabulated(tmp_path, capsys):
    assert tabulate([str(tmp_path / 'nothing_here')]) == 1
    write_run(tmp_path / 'no_eval', config(), {})
    assert tabulate([str(tmp_path)]) == 1
    assert 'nothing could be tabulated' in capsys.readouterr().err


# ---------------------------------------------------------------- outputs

JSON_KEYS = {'task', 'dataset', 'model', 'arch', 'metric', 'control_n', 'control_mean',
             'control_std', 'treatment_n', 'treatment_mean', 'treatment_std', 'gain'}
GAIN_KEYS = {'delta', 'ci_low', 'ci_high', 'method', 'level', 'units', 'replicates'}


def test_outputs(sweep, capsys, tmp_path):
    root, _, _ = sweep
    assert tabulate([str(root), '--format', 'json']) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and all(JSON_KEYS <= row.keys() for row in rows)
    assert all(GAIN_KEYS <= row['gain'].keys() for row in rows)
    assert all(isinstance(row['gain']['delta'], float) for row in rows)

    assert tabulate([str(root), '--reference']) == 0
    markdown = capsys.readouterr().out
    assert markdown.startswith('| task | protocol | data | model |')
    assert '| paired t over seeds [0, 1, 2] | from scratch | from scratch |' in markdown

    assert tabulate([str(root), '--format', 'csv']) == 0
    csv_text = capsys.readouterr().out
    assert csv_text.splitlines()[0].startswith('task,dataset,model,arch,schedule')
    assert len(csv_text.splitlines()) == 4

    assert tabulate([str(root), '--format', 'latex', '--metric', 'aAcc']) == 0
    latex = capsys.readouterr().out
    assert latex.startswith('\\begin{tabular}') and 'aAcc' in latex


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    return struct.unpack('>II', data[16:24])


def test_plots_are_real_pngs_and_pdfs_of_the_page_width(sweep, tmp_path):
    root, _, _ = sweep
    gains = tmp_path / 'gains.png'
    assert tabulate([str(root), '--plot', str(gains), '--curves']) == 0
    width, height = png_size(gains)
    assert width == 7 * 200 and height == round((1.0 + 0.42 * 3) * 200)  # three rows
    width, height = png_size(tmp_path / 'gains_curves.png')  # two experiments, a line each
    assert width == 7 * 200 and height == round(2.1 * 2 * 200)
    for name in ('gains.pdf', 'gains_curves.pdf'):
        assert (tmp_path / name).read_bytes()[:5] == b'%PDF-'
