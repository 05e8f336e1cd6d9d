"""Shared helpers for the tests."""
import subprocess
import sys
import textwrap

import pytest

# as every tool does: registries, checkpoint allowlist, the fast base-config lookup
import cb_transfer  # noqa: F401


def run_python(code: str, cwd=None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (nothing imported yet); fail with its output if it fails."""
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f'subprocess failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n'
                    f'{proc.stderr[-5000:]}')
    return proc
