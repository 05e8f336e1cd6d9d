"""The suite's plan: which runs, in which order, and where each arm's weights come from."""
from pathlib import Path

import pytest
from helpers import DET, REPO, SEG, UPSTREAM

from cb_transfer.suite.plan import SuiteError, load_plan

SUITES = REPO / 'configs' / 'suites'
ARM_SEG = 'configs/smoke/upernet_vit-tiny-p8-reg4_1xb4-240iter_smoke-ade20k-64x64.py'


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / 'suite.py'
    path.write_text(text)
    return str(path)


UPSTREAM_BLOCK = f"upstream = dict(tiny=dict(plain={UPSTREAM[0]!r}, cb={UPSTREAM[1]!r}))\n"


def test_two_stage_feeds_each_arm_from_its_own_pairs_upstream_run(tmp_path):
    plan = load_plan(write(tmp_path, UPSTREAM_BLOCK + f'''
upstream_seeds = [0, 1]
downstream = [dict(plain={SEG[0]!r}, cb={SEG[1]!r}, weights='tiny')]
seeds = [0, 1]
cfg_options = {{{SEG[0]!r}: {{'train_cfg.max_iters': 7}}, {SEG[1]!r}: {{'train_cfg.max_iters': 7}},
               '*': {{'a': 1}}}}
'''), work_dir='root')
    upstream = plan.runs[:4]
    assert [(r.stage, r.arm, r.protocol, r.seed, r.pair) for r in upstream] == [
        ('upstream', 'plain', 'pretraining', 0, 0), ('upstream', 'cb', 'pretraining', 0, 0),
        ('upstream', 'plain', 'pretraining', 1, 1), ('upstream', 'cb', 'pretraining', 1, 1)]
    assert upstream[2].work_dir == Path('root/upstream') / Path(UPSTREAM[0]).stem / 'seed1'
    downstream = plan.runs[4:]
    assert len(downstream) == 2 * 2 * 2 and plan.pairs == [0, 1] and plan.seeds == [0, 1]
    for run in downstream:
        feeder = plan.waits_for(run)
        assert feeder.arm == run.arm and feeder.pair == run.pair and run.protocol == 'two-stage'
        assert run.weights.work_dir == feeder.work_dir
        assert run.work_dir == (Path('root/two-stage') / Path(run.config).stem
                                / f'pair{run.pair}' / f'seed{run.seed}')
        assert run.overrides['protocol'] == 'two-stage'
        assert run.overrides['randomness.seed'] == run.seed and run.overrides['a'] == 1
    assert {(r.pair, r.seed) for r in downstream} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert {r.overrides.get('train_cfg.max_iters') for r in downstream} == {7}
    assert {r.suite for r in plan.runs} == {'suite'}
    assert plan.summary() == ('12 runs (4 pretraining: 2 pairs (seeds 0, 1); 8 fine-tuning: '
                              '2 configs x 2 pairs x 2 seeds)')


def test_pairs_by_count_per_entry_and_the_old_single_seed(tmp_path):
    plan = load_plan(write(tmp_path, f'''
upstream = dict(tiny=dict(plain={UPSTREAM[0]!r}, cb={UPSTREAM[1]!r}, seeds=3))
downstream = [dict(plain={SEG[0]!r}, cb={SEG[1]!r}, weights='tiny', seeds=[5])]
seeds = [0, 1]
'''))
    assert [r.pair for r in plan.runs if r.stage == 'upstream'] == [0, 0, 1, 1, 2, 2]
    assert {(r.pair, r.seed) for r in plan.runs if r.stage == 'downstream'} == {
        (0, 5), (1, 5), (2, 5)}
    old = load_plan(write(tmp_path, UPSTREAM_BLOCK + f"upstream_seed = 4\ndownstream = "
                                    f"[dict(plain={SEG[0]!r}, cb={SEG[1]!r}, weights='tiny')]\n"
                                    "seeds = [0]\n"))
    assert [r.pair for r in old.runs] == [4, 4, 4, 4] and old.pairs == [4]
    with pytest.raises(SuiteError, match=r"upstream_seeds=\[0, 0\] is neither a list of "
                                         'distinct integer seeds nor a positive count'):
        load_plan(write(tmp_path, UPSTREAM_BLOCK + 'upstream_seeds = [0, 0]\n'
                                  f"downstream = [dict(plain={SEG[0]!r})]\nseeds = [0]\n"))


def test_the_same_plain_weights_for_both_arms_is_cb_at_finetune(tmp_path):
    plan = load_plan(write(tmp_path, UPSTREAM_BLOCK + f'''
downstream = [dict(plain={SEG[0]!r}, cb={SEG[1]!r},
                   weights=dict(plain='tiny.plain', cb='tiny.plain'))]
seeds = [0]
'''))
    plain, cb = plan.runs[2:]
    assert plain.protocol == cb.protocol == 'cb-at-finetune'
    assert plain.weights == cb.weights and plan.waits_for(cb).arm == 'plain'
    assert 'cb-at-finetune/' in str(cb.work_dir)


def test_files_the_user_has_and_a_zoo_check(tmp_path):
    plan = load_plan(write(tmp_path, f'''
downstream = [dict(plain={SEG[0]!r}, cb={SEG[1]!r}, weights=dict(plain='a.pth', cb='b.pth')),
              dict(plain={SEG[0]!r}, weights=dict(plain='pretrain/deit.pth'))]
seeds = [0]
'''))
    assert [(r.protocol, r.arm, r.weights.file, r.pair) for r in plan.runs] == [
        ('two-stage', 'plain', 'a.pth', None), ('two-stage', 'cb', 'b.pth', None),
        ('zoo-check', 'plain', 'pretrain/deit.pth', None)]
    assert plan.runs[0].work_dir.name == 'seed0'  # no pair level without upstream runs


def test_named_arms_each_from_their_own_upstream_arm(tmp_path):
    """Three treatments against one control: every arm pretrained with one recipe and
    fine-tuned from its own checkpoint; the control first."""
    plan = load_plan(str(SUITES / 'arms_smoke.py'), work_dir='root')
    upstream = [r for r in plan.runs if r.stage == 'upstream']
    assert [r.arm for r in upstream] == ['plain', 'cb', 'reg4', 'cb_reg4']
    downstream = [r for r in plan.runs if r.stage == 'downstream']
    assert len(downstream) == 4 * 2
    for run in downstream:
        feeder = plan.waits_for(run)
        assert feeder.arm == run.arm and run.protocol == 'two-stage'
        assert ('reg4' in Path(run.config).stem) == ('reg4' in run.arm)


def test_a_zoo_pair_compares_two_published_checkpoints_of_one_recipe(tmp_path):
    plan = load_plan(write(tmp_path, f'''
downstream = [dict(plain={SEG[0]!r}, reg4={ARM_SEG!r}, protocol='zoo-pair',
                   weights=dict(plain='dinov2.pth', reg4='dinov2_reg4.pth'))]
seeds = [0, 1]
'''))
    assert [(r.protocol, r.arm, r.weights.file) for r in plan.runs] == [
        ('zoo-pair', 'plain', 'dinov2.pth'), ('zoo-pair', 'plain', 'dinov2.pth'),
        ('zoo-pair', 'reg4', 'dinov2_reg4.pth'), ('zoo-pair', 'reg4', 'dinov2_reg4.pth')]
    assert all(r.stage == 'downstream' and plan.waits_for(r) is None for r in plan.runs)
    with pytest.raises(SuiteError, match="protocol='zoo-pair' compares published checkpoints"):
        load_plan(write(tmp_path, UPSTREAM_BLOCK + f'''
downstream = [dict(plain={SEG[0]!r}, cb={SEG[1]!r}, protocol='zoo-pair',
                   weights=dict(plain='a.pth', cb='tiny.cb'))]
seeds = [0]
'''))


def test_without_weights_the_config_names_the_protocol(tmp_path):
    plan = load_plan(write(tmp_path, f'''
downstream = [dict(plain={SEG[0]!r}, cb={SEG[1]!r}),
              dict(plain='configs/ade20k/upernet_deit-s16_8xb2-160k_ade20k-512x512.py')]
seeds = [0]
'''))
    assert [(r.protocol, r.weights) for r in plan.runs] == [
        ('from-scratch', None), ('from-scratch', None), ('two-stage', None)]


@pytest.mark.parametrize('downstream, message', [
    (f"[dict(plain={SEG[0]!r}, cb={SEG[1]!r}, weights=dict(plain='deit.pth', cb='tiny.cb'))]",
     'some arms start from a file and others from an upstream run'),
    (f"[dict(plain={SEG[0]!r}, cb={SEG[1]!r}, weights=dict(plain='tiny.cb', cb='tiny.plain'))]",
     r'the arms start from plain from tiny.cb, cb from tiny.plain, not each from its own arm'),
    (f"[dict(plain={SEG[0]!r}, cb={SEG[1]!r}, weights='small')]",
     r"weights='small' is not an upstream pair \(upstream here: \['tiny'\]\)"),
    (f"[dict(plain={SEG[0]!r}, cb={SEG[1]!r}, weights=dict(plain='tiny.plain'))]",
     'with a source for each arm'),
    ("[dict(plain='configs/nope.py', cb='configs/nope-cb.py')]",
     r"config 'configs/nope.py' not found \(looked for .*configs/nope.py\), named in "
     r"suite file .*downstream\[0\]"),
    (f"[dict(plain={SEG[0]!r}, cb={SEG[1]!r}, weights='tiny', extra=1)]",
     r"downstream\[0\]: \['extra'\] are neither arms \(NAME=CONFIG\) nor one of weights"),
    (f"[dict(cb={SEG[1]!r}, reg={SEG[1]!r})]", 'several arms .* but no control'),
    (f"[dict(plain={SEG[0]!r}, cb={SEG[1]!r}, protocol='zoo-pair')]",
     "protocol='zoo-pair' needs weights"),
    (f"[dict(plain={SEG[0]!r}, reg4={ARM_SEG!r}, "
     "weights=dict(plain='tiny.plain', reg4='tiny.plain'))]",
     'reg4 change timm_kwargs but start from the same checkpoint as plain'),
])
def test_bad_entries_name_the_entry_and_the_problem(tmp_path, downstream, message):
    with pytest.raises(SuiteError, match=message):
        load_plan(write(tmp_path, UPSTREAM_BLOCK + f'downstream = {downstream}\nseeds = [0]\n'))


def test_arms_that_are_not_twins_are_refused_naming_the_keys_that_differ(tmp_path):
    # each treatment is checked against the control, and named
    with pytest.raises(SuiteError, match=r"upernet_vit-tiny-p8_1xb4.* \(plain\) and "
                       r"mask-rcnn.* \(det\) differ in"):
        load_plan(write(tmp_path, f"downstream = [dict(plain={SEG[0]!r}, reg4={ARM_SEG!r}, "
                                  f"det={DET[1]!r})]\nseeds = [0]\n"))
    with pytest.raises(SuiteError, match=r"downstream\[0\]: the arms are not twins(.|\n)*"
                       r"model._scope_: 'mmseg' vs 'mmdet'(.|\n)*and \d+ more keys"):
        load_plan(write(tmp_path, f"downstream = [dict(plain={SEG[0]!r}, cb={DET[1]!r})]\n"
                                  'seeds = [0]\n'))
    # an option given to one arm only makes them differ too
    with pytest.raises(SuiteError, match=r'train_cfg.max_iters: 240 vs 7'):
        load_plan(write(tmp_path, f"downstream = [dict(plain={SEG[0]!r}, cb={SEG[1]!r})]\n"
                                  f"seeds = [0]\ncfg_options = {{{SEG[1]!r}: "
                                  "{'train_cfg.max_iters': 7}}\n"))


def test_the_old_format_and_a_missing_file_are_clear_errors(tmp_path):
    with pytest.raises(SuiteError, match="'pairs' is the old format"):
        load_plan(write(tmp_path, f'pairs = [({SEG[0]!r}, {SEG[1]!r})]\nseeds = [0]\n'))
    with pytest.raises(FileNotFoundError, match="suite file '.*nope.py' not found .*; presets: "
                       'arms_smoke, cb_at_finetune, full, smoke, zoo_check'):
        load_plan(str(tmp_path / 'nope.py'))


def test_the_presets():
    full = load_plan(str(SUITES / 'full.py'))
    upstream = [r for r in full.runs if r.stage == 'upstream']
    # three pairs where pretraining is affordable (Ti, S), one for B
    assert sorted((Path(r.config).stem.split('_')[0], r.pair) for r in upstream if r.arm == 'cb') \
        == [('deit-b16-cb', 0)] + [(f'deit-{s}16-cb', p) for s in 'st' for p in (0, 1, 2)]
    downstream = [r for r in full.runs if r.stage == 'downstream']
    assert len(downstream) == 86 and {r.protocol for r in downstream} == {'two-stage'}
    for run in downstream:  # each arm from the pretraining run of its own size, kind and pair
        feeder = full.waits_for(run)
        assert feeder.arm == run.arm and feeder.pair == run.pair
        assert Path(feeder.config).stem.split('_')[0] == Path(run.config).stem.split('_')[1] \
            .replace('-ld', '')
    upernet_s = [r for r in downstream if 'upernet_deit-s16_' in r.config]
    assert sorted((r.pair, r.seed) for r in upernet_s) == [(p, s) for p in range(3) for s in (0, 1)]
    zoo = load_plan(str(SUITES / 'zoo_check.py'))
    assert {(r.arm, r.protocol, r.pair) for r in zoo.runs} == {('plain', 'zoo-check', None)}
    assert all(r.weights.file.startswith('pretrain/deit_') for r in zoo.runs)
    finetune = load_plan(str(SUITES / 'cb_at_finetune.py'))
    assert {r.arm for r in finetune.runs if r.stage == 'upstream'} == {'plain'}
    tuned = [r for r in finetune.runs if r.stage == 'downstream']
    assert {r.protocol for r in tuned} == {'cb-at-finetune'}
    assert all(finetune.waits_for(r).arm == 'plain' and finetune.waits_for(r).pair == r.pair
               for r in tuned)
    smoke = load_plan(str(SUITES / 'smoke.py'))
    assert len(smoke.runs) == 6 + 24 + 24 and smoke.smoke_data and smoke.pairs == [0, 1, 2]
    assert {r.stage for r in smoke.runs[30:]} == {'robustness'}
