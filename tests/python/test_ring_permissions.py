"""Ring files are private to their owner: created 0600, or 0660 (shared with the file's group, for an
agent running as another user) only when LOOPWATCH_RING_MODE says so; any other value is a clear
error that turns recording off while the app runs on."""
from __future__ import annotations

import json
import os
import stat

import pytest

from conftest import run_python

CODE = """
import asyncio, json, os, loopwatch
async def main():
    await asyncio.sleep(0)
    modes = {}
    for name in os.listdir(os.environ["LOOPWATCH_DIR"]) if os.path.isdir(os.environ["LOOPWATCH_DIR"]) else []:
        path = os.path.join(os.environ["LOOPWATCH_DIR"], name)
        modes[name] = os.stat(path).st_mode & 0o777
    return {"modes": modes, "status": loopwatch.status()}
print(json.dumps(asyncio.run(main())))
"""


@pytest.mark.parametrize("setting, expected", [(None, 0o600), ("0600", 0o600), ("0660", 0o660)])
def test_ring_file_mode(tmp_path, setting, expected):
    env = {"LOOPWATCH": "1", "LOOPWATCH_DIR": str(tmp_path / "rings")}
    if setting is not None:
        env["LOOPWATCH_RING_MODE"] = setting
    old_umask = os.umask(0o077)  # the mode must not depend on the umask
    try:
        result = run_python(CODE, env)
    finally:
        os.umask(old_umask)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["status"]["recording"] is True, out["status"]
    modes = [mode for name, mode in out["modes"].items() if name.endswith(".ring")]
    assert modes == [expected], out["modes"]
    dir_mode = stat.S_IMODE(os.stat(tmp_path / "rings").st_mode)
    assert dir_mode == (0o770 if expected == 0o660 else 0o700)


def test_bad_ring_mode_disables_recording_with_a_clear_error(tmp_path):
    env = {"LOOPWATCH": "1", "LOOPWATCH_DIR": str(tmp_path / "rings"), "LOOPWATCH_RING_MODE": "0666"}
    result = run_python(CODE, env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["status"]["recording"] is False
    assert out["modes"] == {}
    assert "LOOPWATCH_RING_MODE must be 0600 or 0660, got '0666'" in out["status"]["error"]
    assert [line for line in result.stderr.splitlines() if "LOOPWATCH_RING_MODE" in line]
