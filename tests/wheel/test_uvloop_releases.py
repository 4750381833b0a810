"""Every uvloop release series of the last years, with the wheel of this interpreter: the hook
installs and busy time is on, found without knowledge of uvloop's C layout (shim/README.md,
"Runtimes"). One fresh venv per release, from PyPI wheels only; a series with no wheel for this
Python is a SKIP that says so. Debian's 0.17 is covered by the debian-3.11 environment.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

RELEASES = ["0.18.0", "0.19.0", "0.20.0", "0.21.0", "0.22.1", "0.23.0"]

CHECK = r"""
import asyncio, json, tempfile, loopwatch
loopwatch.install(dir=tempfile.mkdtemp())
import uvloop
from loopwatch import _shim
async def work():
    for _ in range(20):
        await asyncio.sleep(0.001)
loop = uvloop.new_event_loop()
loop.run_until_complete(work())
print(json.dumps({"version": uvloop.__version__, "uvloop": loopwatch.status()["uvloop"], "loop": _shim.loop_status(loop)}))
"""


@pytest.mark.parametrize("release", RELEASES)
def test_uvloop_release_is_instrumented_with_busy_time(release, repaired, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q", "install", "--only-binary", ":all:"]
    got = subprocess.run(pip + [f"uvloop=={release}"], capture_output=True, text=True, timeout=300)
    if got.returncode != 0:
        if "No matching distribution" in got.stderr or "from versions" in got.stderr:
            pytest.skip(f"uvloop {release} has no wheel for Python {sys.version.split()[0]}")
        pytest.fail(got.stderr)
    subprocess.run(pip + ["--no-index", "--no-deps", str(repaired)], check=True, timeout=120)
    result = subprocess.run([str(venv / "bin" / "python"), "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["version"] == release and out["uvloop"] == "instrumented", out
    loop = out["loop"]
    assert loop["kind"] == "uvloop" and loop["samples_written"] > 0, loop
    assert loop["busy_time"] is True, loop["busy_time_detail"]
