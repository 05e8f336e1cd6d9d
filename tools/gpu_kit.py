"""The GPU kit: everything a bare, offline GPU machine needs to run cb_transfer, prepared here, and
one command that proves the GPU path there.

    python tools/gpu_kit.py download [--kit gpu_kit]         here, where the registry answers
    python tools/gpu_kit.py install --kit gpu_kit [--target DIR] [--arch 9.0] [--dry-run]
    python tools/gpu_kit.py run --kit gpu_kit --out DIR [--dry-run]

``download`` fetches, for the GPU machine's Python (3.12, x86-64), the wheels of what its image
lacks (the OpenMMLab packages and their small dependencies; torch, numpy, OpenCV, timm and the
like are there), mmcv's source distribution (its ops are compiled there, for that GPU only), and
builds cb_transfer's own wheel; every version comes from requirements/constraints.txt. It prints
the kit's size: the kit travels with the working tree, 64 MiB in all. ``install`` installs the
wheels under the machine's own torch (``--no-deps``, from the kit only) into ``--target`` and
compiles mmcv with ``MMCV_WITH_OPS=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=<arch>``. ``run`` installs,
then runs ``cb-check-env``, the tests that exercise the models, ``check_full`` at DeiT-Ti and
the cost benchmark on the GPU, each step's log in ``--out``. ``--dry-run`` prints the steps and
runs none. The kit folder is ignored by git: it is built, never committed.
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / 'requirements' / 'constraints.txt'
PYTHON_VERSION = '3.12'
PLATFORMS = ('manylinux_2_28_x86_64', 'manylinux_2_27_x86_64', 'manylinux_2_17_x86_64',
             'manylinux2014_x86_64', 'manylinux1_x86_64')
# what the GPU machine's image lacks (KINDS.md lists what it holds), as wheels for its Python
WHEELS = ('mmengine', 'mmdet', 'mmsegmentation', 'mmpretrain', 'submitit', 'addict', 'yapf',
          'termcolor', 'terminaltables', 'pycocotools', 'ftfy', 'wcwidth', 'shapely',
          'prettytable', 'model-index', 'modelindex', 'mat4py', 'ordered-set', 'imagecorruptions')
SOURCES = ('mmcv',)                      # compiled there, for its GPU
GPU_ARCH = '9.0'                         # H100 / H200
TESTS = ['tests/test_context_broadcasting.py', 'tests/test_vit.py', 'tests/test_pretrained.py',
         'tests/test_layer_decay.py', 'tests/test_attention.py', 'tests/test_configs.py']


def pins() -> Dict[str, str]:
    """Every pinned version of requirements/constraints.txt, by lower-case name."""
    found = {}
    for line in CONSTRAINTS.read_text().splitlines():
        match = re.match(r'^([A-Za-z0-9_.-]+)==(\S+)', line.strip())
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def download_commands(kit: Path) -> List[List[str]]:
    versions = pins()
    missing = [name for name in WHEELS + SOURCES if name.lower() not in versions]
    if missing:
        raise SystemExit(f'no pin for {", ".join(missing)} in {CONSTRAINTS}')
    platforms = [arg for platform in PLATFORMS for arg in ('--platform', platform)]
    pip = [sys.executable, '-m', 'pip']
    return [
        pip + ['download', '--no-deps', '--only-binary=:all:', '--python-version', PYTHON_VERSION,
               '--implementation', 'cp', *platforms, '-d', str(kit / 'wheels'),
               *[f'{name}=={versions[name.lower()]}' for name in WHEELS]],
        pip + ['download', '--no-deps', '--no-binary=:all:', '-d', str(kit / 'sources'),
               *[f'{name}=={versions[name]}' for name in SOURCES]],
        pip + ['wheel', '--no-deps', '--no-build-isolation', '-q', str(REPO), '-w',
               str(kit / 'wheels')],
    ]


def install_commands(kit: Path, target: Path, arch: str, build_mmcv: bool = True
                     ) -> List[tuple]:
    """(command, extra environment) of each install step."""
    pip = [sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps',
           '--no-compile', '--upgrade', '--target', str(target)]
    wheels = sorted(str(p) for p in (kit / 'wheels').glob('*.whl'))
    steps = [(pip + wheels, {})]
    if build_mmcv:
        sources = sorted(str(p) for p in (kit / 'sources').glob('mmcv-*'))
        env = dict(MMCV_WITH_OPS='1', FORCE_CUDA='1', TORCH_CUDA_ARCH_LIST=arch,
                   MAX_JOBS=str(os.cpu_count() or 4), PYTHONPATH=str(target))
        steps.append((pip + ['--no-build-isolation', *sources], env))
    return steps


def run_commands(kit: Path, target: Path, out: Path) -> List[tuple]:
    """(name, command) of each measurement after the install, with cb_transfer from
    ``target``."""
    python = sys.executable
    return [
        ('check_env', [python, '-m', 'cb_transfer.env']),
        ('tests', [python, '-m', 'pytest', '-q', '-m', 'not e2e', '-p', 'no:cacheprovider',
                   *TESTS]),
        ('check_full', [python, str(REPO / 'tools' / 'check_full.py'), '--sizes', 't',
                        '--work-dir', str(out / 'check_full')]),
        ('benchmark', [python, str(REPO / 'tools' / 'benchmark.py'), '--archs', 'deit-s',
                       '--sizes', '224', '512', '--rounds', '7', '--memory', '--json',
                       str(out / 'benchmark.json')]),
    ]


def show(cmd: List[str], env: dict = None) -> str:
    prefix = ' '.join(f'{k}={shlex.quote(v)}' for k, v in (env or {}).items())
    return (prefix + ' ' if prefix else '') + ' '.join(shlex.quote(str(c)) for c in cmd)


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob('*') if p.is_file())


def download(kit: Path, dry_run: bool) -> int:
    for cmd in download_commands(kit):
        print(show(cmd), flush=True)
        if not dry_run:
            subprocess.run(cmd, check=True)
    if dry_run:
        return 0
    files = sorted(p for p in kit.rglob('*') if p.is_file())
    manifest = {str(p.relative_to(kit)): p.stat().st_size for p in files}
    (kit / 'manifest.json').write_text(json.dumps(manifest, indent=1))
    for name, size in manifest.items():
        print(f'{size / 2 ** 20:8.2f} MiB  {name}')
    print(f'{size_of(kit) / 2 ** 20:.1f} MiB in {kit} ({len(files)} files); the working tree '
          f'that travels holds at most 64 MiB')
    return 0


def install(kit: Path, target: Path, arch: str, build_mmcv: bool, dry_run: bool) -> int:
    for cmd, env in install_commands(kit, target, arch, build_mmcv):
        print(show(cmd, env), flush=True)
        if not dry_run:
            start = time.time()
            subprocess.run(cmd, check=True, env={**os.environ, **env})
            print(f'  done in {time.time() - start:.0f} s', flush=True)
    return 0


def run(kit: Path, target: Path, out: Path, arch: str, dry_run: bool) -> int:
    install(kit, target, arch, True, dry_run)
    env = {**os.environ, 'PYTHONPATH': str(target)}
    failed = []
    for name, cmd in run_commands(kit, target, out):
        print(f'{name}: {show(cmd)}', flush=True)
        if dry_run:
            continue
        out.mkdir(parents=True, exist_ok=True)
        start = time.time()
        with open(out / f'{name}.log', 'w') as log:
            code = subprocess.run(cmd, cwd=REPO, env=env, stdout=log,
                                  stderr=subprocess.STDOUT).returncode
        print(f'  exit {code} in {time.time() - start:.0f} s; log {out / f"{name}.log"}',
              flush=True)
        if code:
            failed.append(name)
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('action', choices=('download', 'install', 'run'))
    parser.add_argument('--kit', default=str(REPO / 'gpu_kit'), help='the kit folder')
    parser.add_argument('--target', default='/tmp/cb_transfer_site',
                        help='where install puts the packages (PYTHONPATH)')
    parser.add_argument('--arch', default=GPU_ARCH, help='TORCH_CUDA_ARCH_LIST for mmcv')
    parser.add_argument('--out', default='gpu_kit_out', help='where run writes its logs')
    parser.add_argument('--skip-mmcv', action='store_true',
                        help='install the wheels only (mmcv already built)')
    parser.add_argument('--dry-run', action='store_true', help='print the steps, run none')
    args = parser.parse_args(argv)
    kit, target = Path(args.kit).resolve(), Path(args.target).resolve()
    if args.action == 'download':
        return download(kit, args.dry_run)
    if args.action == 'install':
        return install(kit, target, args.arch, not args.skip_mmcv, args.dry_run)
    return run(kit, target, Path(args.out).resolve(), args.arch, args.dry_run)


if __name__ == '__main__':
    sys.exit(main())
