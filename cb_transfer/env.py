"""``cb-check-env`` / ``python -m cb_transfer.env``: does this environment run cb_transfer?

For an environment of the user's own (their CUDA torch, an mmcv built with CUDA ops, the
OpenMMLab packages), not only our ``.venv``: each package cb_transfer needs against the range
``setup.cfg`` states, whether mmcv's compiled ops are there and for CUDA, and whether torch sees
a GPU; and, for each problem, what to do about it. Exits 1 when something required is wrong.
"""
import argparse
import configparser
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from packaging.requirements import Requirement

README = 'README, "Your own environment"'


@dataclass
class Check:
    """One thing checked: what was found, whether it is fine, and what to do if not."""
    name: str
    found: str
    ok: bool
    required: bool = True
    message: str = ''

    def line(self) -> str:
        status = 'ok  ' if self.ok else ('FAIL' if self.required else 'note')
        return f'[{status}] {self.name}: {self.found}' + (f'\n       {self.message}'
                                                        if self.message else '')


def requirements() -> List[Requirement]:
    """What cb_transfer needs, as its installed metadata (or, in a source tree that was never
    installed, ``setup.cfg``) states it; extras left out."""
    try:
        lines = metadata.requires('cb_transfer') or []
    except metadata.PackageNotFoundError:
        parser = configparser.ConfigParser()
        parser.read(Path(__file__).resolve().parents[1] / 'setup.cfg')
        lines = [line for line in parser['options']['install_requires'].splitlines() if line]
    found = [Requirement(line) for line in lines]
    return [r for r in found if r.marker is None]


def installed_version(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def mmcv_ops() -> Tuple[bool, Optional[str]]:
    """(whether mmcv's compiled ops import, the CUDA version they were built with or None)."""
    try:
        import mmcv._ext  # noqa: F401
        from mmcv.ops import get_compiling_cuda_version
    except ImportError:
        return False, None
    cuda = get_compiling_cuda_version()
    return True, (None if cuda in ('not available', '', None) else str(cuda))


def gpus() -> List[str]:
    import torch
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def _version_check(requirement: Requirement, version: Optional[str]) -> Check:
    wanted = f'{requirement.name}{requirement.specifier}'
    if version is None:
        return Check(requirement.name, 'not installed', False,
                     message=f'{requirement.name} is not installed; cb_transfer needs {wanted}: '
                     f'pip install "{wanted}" (mmcv: built with its ops, see the mmcv line)')
    if requirement.specifier.contains(version, prereleases=True):
        return Check(requirement.name, version, True)
    fix = ('build mmcv with its compiled ops in the range (MMCV_WITH_OPS=1 pip install '
           '--no-build-isolation "mmcv==2.1.0")' if requirement.name == 'mmcv'
           else f'pip install "{wanted}"')
    return Check(requirement.name, version, False,
                 message=f'{requirement.name} {version} is installed; cb_transfer needs {wanted}: '
                 f'{fix}')


def check_environment(versions: Optional[Dict[str, Optional[str]]] = None,
                      mmcv_ops: Callable[[], Tuple[bool, Optional[str]]] = mmcv_ops,
                      gpus: Callable[[], List[str]] = gpus) -> List[Check]:
    """Every check, in order.

    Args:
        versions: Installed versions to use instead of the environment's (by package name;
            None: not installed), for what-if checks.
        mmcv_ops: Says whether mmcv's ops import and for which CUDA.
        gpus: The GPUs torch sees.
    """
    versions = versions or {}
    checks = [_version_check(r, versions[r.name] if r.name in versions
                             else installed_version(r.name)) for r in requirements()]
    found_gpus = gpus()
    has_ops, cuda = mmcv_ops()
    if not has_ops:
        checks.append(Check('mmcv ops', 'missing', False, message=(
            'mmcv was installed without its compiled ops (mmcv-lite, or built without '
            'MMCV_WITH_OPS=1); mmseg and mmdet import mmcv.ops. Build it: MMCV_WITH_OPS=1 '
            f'{"FORCE_CUDA=1 " if found_gpus else ""}pip install --no-build-isolation '
            f'"mmcv==2.1.0" ({README})')))
    elif cuda is None and found_gpus:
        checks.append(Check('mmcv ops', 'built for the CPU only', False, required=False, message=(
            'torch sees a GPU but mmcv\'s ops have no CUDA kernels: detection on the GPU fails '
            'in RoIAlign and NMS. Rebuild with MMCV_WITH_OPS=1 FORCE_CUDA=1 (and nvcc matching '
            f'torch\'s CUDA; {README})')))
    else:
        checks.append(Check('mmcv ops', f'CUDA {cuda}' if cuda else 'CPU (no CUDA kernels)', True))
    import torch
    checks.append(Check('GPU', ', '.join(found_gpus) + f' (CUDA {torch.version.cuda})'
                        if found_gpus else 'none: training runs on the CPU (gloo for several '
                        'processes)', True, required=False))
    return checks


def main(argv: Optional[List[str]] = None) -> int:
    argparse.ArgumentParser(description=__doc__.split('\n\n')[0]).parse_args(argv)
    checks = check_environment()
    for check in checks:
        print(check.line())
    failed = [c for c in checks if c.required and not c.ok]
    print(f'{len(failed)} problem{"s" * (len(failed) != 1)}' if failed
          else 'cb_transfer can run here')
    return 1 if failed else 0


if __name__ == '__main__':
    raise SystemExit(main())
