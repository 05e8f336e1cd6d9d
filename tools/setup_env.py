"""Create or update cb_transfer's Python environment: the pinned OpenMMLab stack plus this package.

Run with the Python the environment is for (3.11):

    python3.11 tools/setup_env.py [--venv .venv]

Steps, each announced as it starts:
  1. check the interpreter and the free disk space;
  2. create the virtual environment (``--venv``, default ``.venv`` in the repository);
  3. install the build tools and torch from ``requirements/constraints.txt``;
  4. build mmcv 2.1.0 with its compiled ops once into a cache outside the repository
     (``$CB_TRANSFER_CACHE``, default ``~/.cache/cb_transfer``) and install that wheel;
  5. install the rest of the stack and cb_transfer itself (editable), all under the constraints;
  6. patch torchvision only where ``import torchvision`` fails with CPU torch (SETUP_NOTES trap 2);
  7. check that the stack imports, and write a stamp.

It is idempotent: when the stamp matches the constraints, setup.cfg and this script, and the stack
imports, it says so and changes nothing. Any failing step ends with a message naming the step and
the tail of its log, not a traceback.
"""
import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / 'requirements' / 'constraints.txt'
MMCV_VERSION = '2.1.0'
REQUIRED_PYTHON = (3, 11)
# A fresh environment takes about 4 GB, the mmcv build about 2 GB of temporary files.
MIN_FREE_GB = 6
STACK_IMPORTS = ('import torch, torchvision, timm, mmengine, mmcv.ops, mmseg, mmdet, mmpretrain, '
                 'submitit, cb_transfer')


class SetupError(RuntimeError):
    """A step failed; the message says which and why."""


def say(msg: str) -> None:
    print(f'[setup] {msg}', flush=True)


def cache_dir() -> Path:
    root = os.environ.get('CB_TRANSFER_CACHE') or Path.home() / '.cache' / 'cb_transfer'
    return Path(root)


def fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (CONSTRAINTS, REPO / 'setup.cfg', Path(__file__).resolve()):
        digest.update(path.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def run(step: str, cmd: list, log: Path, env: dict = None) -> str:
    """Run ``cmd``; on failure raise SetupError naming ``step`` with the tail of its output."""
    with open(log, 'a') as f:
        f.write(f'\n$ {" ".join(map(str, cmd))}\n')
        f.flush()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, **(env or {})})
        f.write(proc.stdout)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stdout.splitlines() if 'is ignored: it is neither' not in ln]
        tail = '\n'.join(lines[-25:])
        hint = ''
        if 'No space left on device' in proc.stdout:
            hint = '\nThe disk is full: free some space and run the set-up again.'
        raise SetupError(f'{step} failed (exit {proc.returncode}). Last lines:\n{tail}{hint}\n'
                         f'Full log: {log}')
    return proc.stdout


def check_disk(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(path).free / 1e9
    if free_gb < MIN_FREE_GB:
        raise SetupError(f'only {free_gb:.1f} GB free at {path}; the set-up needs about '
                         f'{MIN_FREE_GB} GB. Free some space and run it again.')


def torch_build(py: Path, log: Path) -> str:
    """'cpu' or 'cuXYZ': the build of the installed torch, which the mmcv wheel is tied to."""
    out = run('reading the torch build', [
        py, '-c', 'import torch; print(torch.__version__.split("+")[0], torch.version.cuda or "cpu")'
    ], log)
    version, cuda = out.split()[-2:]
    return f'torch{version}-' + ('cpu' if cuda == 'cpu' else 'cu' + cuda.replace('.', ''))


def ensure_mmcv_wheel(py: Path, log: Path) -> Path:
    """The cached mmcv wheel for this torch build, compiling it first if it is not there."""
    build = torch_build(py, log)
    wheel_dir = cache_dir() / 'wheels' / build
    wheels = sorted(wheel_dir.glob(f'mmcv-{MMCV_VERSION}-*.whl'))
    if wheels:
        say(f'mmcv {MMCV_VERSION} wheel found in cache: {wheels[0]}')
        return wheels[0]
    cuda = not build.endswith('cpu')
    jobs = os.cpu_count() or 2
    say(f'building mmcv {MMCV_VERSION} with its compiled {"CUDA" if cuda else "CPU"} ops for '
        f'{build}: this takes about 16 minutes on 2 cores (done once, then cached in {wheel_dir})')
    check_disk(cache_dir())
    start = time.time()
    with tempfile.TemporaryDirectory(prefix='mmcv-build-') as tmp:
        run('compiling mmcv', [
            py, '-m', 'pip', 'wheel', '--no-build-isolation', '--no-deps',
            f'mmcv=={MMCV_VERSION}', '-w', tmp
        ], log, env=dict(MMCV_WITH_OPS='1', FORCE_CUDA='1' if cuda else '0', MAX_JOBS=str(jobs)))
        built = list(Path(tmp).glob('mmcv-*.whl'))
        if len(built) != 1:
            raise SetupError(f'compiling mmcv produced {built}, expected one wheel. Log: {log}')
        wheel_dir.mkdir(parents=True, exist_ok=True)
        target = wheel_dir / built[0].name
        # copy then rename, so that an interrupted copy never leaves a truncated wheel in the cache
        partial = target.with_suffix('.partial')
        shutil.copy2(built[0], partial)
        partial.rename(target)
    say(f'mmcv built in {time.time() - start:.0f} s: {target}')
    return target


def fix_torchvision(py: Path, log: Path) -> None:
    """Make ``import torchvision`` work with CPU torch where it does not (SETUP_NOTES trap 2).

    The registry's torchvision 0.28.0 is a CUDA build: its ops library cannot load with CPU torch,
    yet ``_meta_registrations.py`` registers fake kernels for ``torchvision::nms``/``qnms``, which
    then do not exist, and the import fails. The patch registers them only when the ops loaded.
    Nothing in this stack uses torchvision's ops (mmcv.ops provides them), but timm and mmengine's
    Runner import torchvision.
    """
    probe = subprocess.run([py, '-c', 'import torchvision'], capture_output=True, text=True)
    if probe.returncode == 0:
        say('torchvision imports: no compatibility step needed')
        return
    if 'torchvision::nms does not exist' not in probe.stderr:
        raise SetupError('import torchvision fails, and not with the known CPU-torch error:\n'
                         + probe.stderr[-2000:])
    say('torchvision (a CUDA build) fails to import with CPU torch: patching its fake-kernel '
        'registrations (see README, "Why the torchvision step")')
    out = run('locating torchvision', [
        py, '-c', 'import importlib.util; '
        'print(importlib.util.find_spec("torchvision").submodule_search_locations[0])'
    ], log)
    meta = Path(out.split()[-1]) / '_meta_registrations.py'
    text = meta.read_text()
    patched = re.sub(
        r'^@torch\.library\.register_fake\(("torchvision::[a-z_]+")\)$',
        r'@(torch.library.register_fake(\1) if torchvision.extension._has_ops() else (lambda f: f))',
        text, flags=re.M)
    meta.write_text(patched)
    run('importing torchvision after the patch', [py, '-c', 'import torchvision'], log)


def setup(venv: Path, force: bool) -> None:
    if sys.version_info[:2] != REQUIRED_PYTHON:
        raise SetupError(f'this is Python {sys.version.split()[0]} at {sys.executable}; the stack '
                         f'needs Python 3.11 (the only CPU torch 2.13.0 build is for cp311). Run '
                         f'the set-up with python3.11 (make PYTHON=/path/to/python3.11 ...).')
    py = venv / 'bin' / 'python'
    stamp = venv / '.cb_transfer-setup'
    log = cache_dir() / 'setup.log'
    log.parent.mkdir(parents=True, exist_ok=True)

    if not force and stamp.exists() and stamp.read_text() == fingerprint():
        check = subprocess.run([py, '-c', STACK_IMPORTS], capture_output=True, text=True)
        if check.returncode == 0:
            say(f'environment {venv} is up to date (remove {stamp} or pass --force to redo)')
            return
        say(f'environment {venv} is stamped but the stack does not import; repairing')

    check_disk(venv.parent)
    if not py.exists():
        say(f'[1/6] creating the virtual environment {venv} (Python 3.11)')
        run('creating the virtual environment', [sys.executable, '-m', 'venv', venv], log)
    # Byte-compiled at install (pip's default), not left to the first import: where
    # PYTHONDONTWRITEBYTECODE is set (as on this project's machines), nothing compiled at import
    # is kept, and every process would compile torch and the stack again.
    pip = [py, '-m', 'pip', 'install', '--disable-pip-version-check', '-c', CONSTRAINTS]

    say('[2/6] installing build tools and torch 2.13.0 (pinned, CPU build where no GPU)')
    run('installing build tools and torch', pip + ['setuptools', 'wheel', 'ninja', 'torch'], log)

    say('[3/6] mmcv with compiled ops')
    wheel = ensure_mmcv_wheel(py, log)
    run('installing the mmcv wheel', pip + ['--no-deps', wheel], log)

    say('[4/6] installing the OpenMMLab stack and cb_transfer (editable)')
    run('installing the stack', pip + ['--no-build-isolation', '-e', f'{REPO}[tests]'], log)

    say('[5/6] checking torchvision')
    fix_torchvision(py, log)

    say('[6/6] checking that the stack imports')
    run('importing the stack', [py, '-c', STACK_IMPORTS], log)
    stamp.write_text(fingerprint())
    say(f'environment ready: {venv}')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--venv', type=Path, default=REPO / '.venv',
                        help='where the virtual environment lives (default: .venv in the repo)')
    parser.add_argument('--force', action='store_true', help='redo every step')
    args = parser.parse_args()
    start = time.time()
    try:
        setup(args.venv.absolute(), args.force)
    except SetupError as err:
        print(f'[setup] ERROR: {err}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('[setup] interrupted; run it again to continue', file=sys.stderr)
        return 130
    say(f'done in {time.time() - start:.0f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
