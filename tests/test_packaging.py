"""Where users already are: cb_transfer as a wheel installed into an environment of their own
(its configs inside it), and the check of that environment."""
import json
import os
import re
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import REPO, run

from cb_transfer.env import Check, check_environment, main as check_env_main


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """The package built into a wheel from a copy of the source tree, installed into a fresh
    target folder outside it (what ``pip install cb_transfer`` into a user's environment does;
    the stack it needs is this environment's)."""
    root = tmp_path_factory.mktemp('packaging')
    source = root / 'source'
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        '.git', '.venv', 'work_dirs', 'data', 'build', '*.egg-info', '__pycache__'))
    run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
         source, '-w', root / 'wheel'], root)
    (wheel,) = (root / 'wheel').glob('cb_transfer-*.whl')
    target = root / 'site'
    run([sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-index', '-q', '--target',
         target, wheel], root)
    elsewhere = root / 'elsewhere'
    elsewhere.mkdir()
    return target, elsewhere, wheel


def test_the_wheel_carries_every_config_once_written(installed):
    target, _, _ = installed
    shipped = sorted(p.relative_to(target / 'cb_transfer' / '.mim' / 'configs')
                     for p in (target / 'cb_transfer' / '.mim' / 'configs').rglob('*.py'))
    written = sorted(p.relative_to(REPO / 'configs') for p in (REPO / 'configs').rglob('*.py'))
    assert shipped == written and len(written) > 40
    assert not (target / 'cb_transfer' / '.mim' / 'configs').is_symlink()


def test_from_another_directory_the_installed_package_plans_loads_and_builds(installed):
    target, elsewhere, _ = installed
    env = dict(PYTHONPATH=str(target))
    dry_run = run([target / 'bin' / 'cb-run-suite', 'smoke', '--dry-run'], elsewhere, env=env)
    assert 'suite smoke: 54 runs' in dry_run.stdout and str(REPO) not in dry_run.stdout
    assert not any(elsewhere.iterdir())  # a dry run touches nothing
    (elsewhere / 'my_config.py').write_text(textwrap.dedent('''
        _base_ = ['cb_transfer::ade20k/upernet_deit-s16-cb_8xb2-160k_ade20k-512x512.py']
        model = dict(backbone=dict(cb_position='attn', init_cfg=None))
        '''))
    built = run([sys.executable, '-c', textwrap.dedent('''
        import cb_transfer
        from mmengine.config import Config
        from mmengine.registry import MODELS
        cfg = Config.fromfile('my_config.py')
        print('package', cb_transfer.__file__)
        from cb_transfer.suite import load_plan
        print('smoke', load_plan('smoke').runs[0].config)
        print('type', cfg.model.backbone.type, 'position', cfg.model.backbone.cb_position)
        backbone = MODELS.build(dict(type='cb_transfer.ViT', arch='deit_tiny_patch16_224',
                                     cb=True))
        print('built', type(backbone).__module__, type(backbone).__name__, backbone.cb)
        ''')], elsewhere, env=env).stdout
    assert f"package {target / 'cb_transfer' / '__init__.py'}" in built
    assert f"smoke {target / 'cb_transfer' / '.mim' / 'configs' / 'smoke'}" in built
    assert 'type cb_transfer.ViT position attn' in built
    assert 'built cb_transfer.models.vit ViT True' in built


def test_the_environment_check_passes_here_and_names_each_problem():
    here = check_environment()
    assert all(c.ok for c in here if c.required), [c for c in here if not c.ok]
    assert {c.name for c in here} >= {'torch', 'mmcv', 'mmengine', 'mmcv ops', 'GPU'}
    mmcv_ops = next(c for c in here if c.name == 'mmcv ops')
    assert mmcv_ops.ok and 'CPU' in mmcv_ops.found  # this machine's build has no CUDA ops
    assert check_env_main([]) == 0

    # an out-of-range version and mmcv without its compiled ops, as found elsewhere
    faked = check_environment(versions={'mmcv': '2.2.0', 'timm': None},
                              mmcv_ops=lambda: (False, None))
    by_name = {c.name: c for c in faked}
    assert not by_name['mmcv'].ok and 'mmcv 2.2.0 is installed; cb_transfer needs ' \
        'mmcv<2.2.0,>=2.0.0rc4' in by_name['mmcv'].message
    assert not by_name['timm'].ok and 'timm is not installed' in by_name['timm'].message
    assert not by_name['mmcv ops'].ok and 'MMCV_WITH_OPS=1' in by_name['mmcv ops'].message
    assert isinstance(by_name['GPU'], Check)


def test_cb_transfer_bases_resolve_in_the_editable_install_too(tmp_path, monkeypatch):
    """mmengine finds a package's folder from its distribution, which for an editable install is
    site-packages: the lookup takes the importable package instead."""
    from mmengine.config import Config
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'mine.py').write_text(
        "_base_ = ['cb_transfer::smoke/upernet_vit-tiny-p8-cb_1xb4-240iter_smoke-ade20k-64x64.py']\n"
        "train_cfg = dict(max_iters=7)\n")
    cfg = Config.fromfile('mine.py')
    assert cfg.model.backbone.cb is True and cfg.train_cfg.max_iters == 7
    from cb_transfer.config_lookup import find_config, find_suite
    assert find_suite('smoke') == (REPO / 'configs' / 'suites' / 'smoke.py').resolve()
    assert find_config('configs/smoke/vit-tiny-p8_1xb32-12e_smoke-in1k-64x64.py') == \
        (REPO / 'configs' / 'smoke' / 'vit-tiny-p8_1xb32-12e_smoke-in1k-64x64.py').resolve()


# one config per family, at the Ti size: a broken full-size pipeline fails here
# one config per family; UPerNet's full-size config rehearses on real ADE20K images below
FULL_SIZE = ['deit-t16_8xb128-300e_in1k-224.py', 'fpn_deit-t16_8xb4-40k_ade20k-512x512.py',
             'mask-rcnn_deit-t16_fpn_8xb2-ms-3x_coco.py']


@pytest.mark.e2e
def test_one_full_size_config_per_family_takes_two_steps_and_validates(tmp_path):
    out = run([sys.executable, REPO / 'tools' / 'check_full.py', '--configs', *FULL_SIZE,
               '--work-dir', tmp_path], tmp_path, env=dict(OMP_NUM_THREADS='2')).stdout
    assert '3 full-size configs, 2 training iterations at batch 2 and 2 validation images each' \
        in out and 'data: generated data' in out
    for name in FULL_SIZE:
        assert re.search(rf'\] ok   {re.escape(name)} \(\d+ s\): 2 iterations, validated: \w', out), out
    assert '3 of 3 configs took their steps' in out
    # at the real resolutions: the dumped configs read the real data layouts
    assert (tmp_path / 'data' / 'coco' / 'annotations' / 'instances_train2017.json').is_file()


# real labelled images (ADE20K, VOC in COCO's layout) where a developer's machine has them beside
# the repository; never part of it
REAL_SAMPLES = Path(os.environ.get('CB_TRANSFER_REAL_SAMPLES',
                                   REPO.parent / 'shared' / 'real_samples'))
# the VOC names of the sample's categories that COCO spells otherwise (its README)
VOC_TO_COCO = {'sofa': 'couch', 'tv/monitor': 'tv', 'diningtable': 'dining table',
               'motorbike': 'motorcycle', 'aeroplane': 'airplane'}


def real_roots(target: Path) -> dict:
    """The real sample images in the layouts the full-size configs read (copied into the test's
    own folder, never into the repository): three ADE20K images as both splits; three VOC photos
    with their COCO JSON as both splits, its categories renamed and renumbered to COCO's, and
    COCO's others added (the rehearsal asks for them: the evaluator needs every class's)."""
    from mmdet.datasets import CocoDataset
    ade, coco = target / 'ADEChallengeData2016', target / 'coco'
    for split in ('training', 'validation'):
        shutil.copytree(REAL_SAMPLES / 'ade20k' / 'images', ade / 'images' / split)
        shutil.copytree(REAL_SAMPLES / 'ade20k' / 'annotations', ade / 'annotations' / split)
    content = json.loads((REAL_SAMPLES / 'voc_coco' / 'annotations.json').read_text())
    coco_ids = {name: i + 1 for i, name in enumerate(CocoDataset.METAINFO['classes'])}
    renumbered = {}
    for category in content['categories']:
        name = VOC_TO_COCO.get(category['name'], category['name'])
        renumbered[category['id']] = coco_ids.get(name)
        category.update(name=name, id=coco_ids.get(name, 1000 + category['id']))
    for annotation in content['annotations']:
        annotation['category_id'] = renumbered[annotation['category_id']]
    present = {c['name'] for c in content['categories']}
    content['categories'] += [dict(id=i, name=name) for name, i in coco_ids.items()
                              if name not in present]
    (coco / 'annotations').mkdir(parents=True)
    for split in ('train2017', 'val2017'):
        shutil.copytree(REAL_SAMPLES / 'voc_coco' / 'JPEGImages', coco / split)
        images = [dict(image, file_name=Path(image['file_name']).name)
                  for image in content['images']]
        (coco / 'annotations' / f'instances_{split}.json').write_text(
            json.dumps(dict(content, images=images)))
    return dict(ade20k=ade, coco=coco)


@pytest.mark.e2e
@pytest.mark.skipif(not REAL_SAMPLES.is_dir(), reason='the real sample images are not here')
def test_the_rehearsal_trains_and_validates_full_size_configs_on_real_images(tmp_path):
    """Real ADE20K sizes (683x512, 500x364, 400x300) crashed the UPerNet config's first
    validation before the backbone padded; real VOC photos with a COCO JSON."""
    roots = real_roots(tmp_path / 'real')
    configs = ['upernet_deit-t16_8xb2-160k_ade20k-512x512.py', 'mask-rcnn_deit-t16_fpn_8xb2-1x_coco.py']
    out = run([sys.executable, REPO / 'tools' / 'check_full.py', '--ade20k', roots['ade20k'],
               '--coco', roots['coco'], '--configs', *configs, '--val-images', '3',
               '--work-dir', tmp_path / 'runs'], tmp_path, env=dict(OMP_NUM_THREADS='2')).stdout
    assert f"data: ade20k {roots['ade20k']}, coco {roots['coco']}" in out
    assert '2 of 2 configs took their steps' in out, out
    assert re.search(r'ok   upernet_deit-t16.*validated: aAcc \d', out), out
    assert re.search(r'ok   mask-rcnn_deit-t16.*validated: coco/bbox_mAP', out), out


def test_the_rehearsal_refuses_a_malformed_root_before_building_a_model(tmp_path):
    for folder in ('images', 'annotations'):  # training's folders, empty; no validation's
        (tmp_path / 'ade' / folder / 'training').mkdir(parents=True)
    proc = run([sys.executable, REPO / 'tools' / 'check_full.py', '--ade20k', tmp_path / 'ade',
                '--configs', 'upernet_deit-t16_8xb2-160k_ade20k-512x512.py', '--work-dir',
                tmp_path / 'runs'], tmp_path, check=False)
    assert proc.returncode == 1
    out = proc.stdout
    assert 'FAIL upernet_deit-t16_8xb2-160k_ade20k-512x512.py' in out
    assert 'not run, the data are not what it reads' in out
    assert "images/validation' is not a folder: the val images or labels " \
        "(val_dataloader.dataset.data_prefix.img_path = 'images/validation')" in out
    assert "holds no .jpg images" in out  # training: the folder is there, empty
    assert '0 of 1 configs took their steps' in out


GPU_KIT = REPO / 'tools' / 'gpu_kit.py'


def test_the_gpu_kit_dry_run_lists_every_step_for_the_gpu_machine(tmp_path):
    download = run([sys.executable, GPU_KIT, 'download', '--kit', tmp_path / 'kit', '--dry-run'],
                   tmp_path).stdout
    assert '--python-version 3.12' in download and '--only-binary=:all:' in download
    for pin in ('mmengine==0.10.7', 'mmdet==3.3.0', 'mmsegmentation==1.2.2', 'mmpretrain==1.2.0'):
        assert pin in download  # the versions of requirements/constraints.txt
    assert '--no-binary=:all:' in download and 'mmcv==2.1.0' in download
    assert not (tmp_path / 'kit').exists()
    steps = run([sys.executable, GPU_KIT, 'run', '--kit', tmp_path / 'kit', '--target',
                 tmp_path / 'site', '--out', tmp_path / 'out', '--dry-run'], tmp_path).stdout
    assert 'MMCV_WITH_OPS=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0' in steps
    for step in ('check_env: ', 'tests: ', 'check_full: ', 'benchmark: '):
        assert step in steps
    assert not (tmp_path / 'site').exists() and not (tmp_path / 'out').exists()


def test_the_gpu_kit_installs_its_wheels_under_this_python(installed, tmp_path):
    """The install step against this machine's Python: a kit of cb_transfer's wheel (the GPU
    machine's kit holds the OpenMMLab wheels for its Python besides, and mmcv's source)."""
    _, _, wheel = installed
    (tmp_path / 'kit' / 'wheels').mkdir(parents=True)
    shutil.copy(wheel, tmp_path / 'kit' / 'wheels')
    target = tmp_path / 'site'
    out = run([sys.executable, GPU_KIT, 'install', '--kit', tmp_path / 'kit', '--target', target,
               '--skip-mmcv'], tmp_path).stdout
    assert '--no-index --no-deps' in out and 'done in' in out
    check = run([sys.executable, '-c', 'import cb_transfer, sys; print(cb_transfer.__file__); '
                 'from cb_transfer.env import main; sys.exit(main([]))'], tmp_path,
                env=dict(PYTHONPATH=str(target))).stdout
    assert str(target / 'cb_transfer' / '__init__.py') in check
    assert 'cb_transfer can run here' in check
