"""Activation: LOOPWATCH=1 turns the shim on at interpreter start through loopwatch.pth (both loops,
once per process); without it, importing loopwatch changes nothing. Each case runs in a fresh
interpreter of the venv, where the .pth file is live."""
from __future__ import annotations

import json

import pytest

from conftest import LOOP_KINDS, run_python

PROGRAM = """
import asyncio, json, sys, time
{setup}
def blocking():
    time.sleep(0.05)
async def main():
    asyncio.get_running_loop().call_soon(blocking)
    await asyncio.sleep(0.01)
    import loopwatch
    st = loopwatch.status()
    out = {{"status": st, "modules": sorted(m for m in sys.modules if m.startswith("loopwatch"))}}
    loop_st = st["loops"][0] if st["loops"] else None
    if loop_st and loop_st["file"]:
        from loopwatch import _shim
        ring = _shim.read_ring(loop_st["file"])
        out["names"] = [ring["names"].get(s["name_id"]) for s in ring["samples"]]
        out["durations"] = [s["duration"] for s in ring["samples"]]
        out["header"] = ring["header"]
    print(json.dumps(out))
asyncio.run(main())
"""
SETUP = {"asyncio": "", "uvloop": "import uvloop; uvloop.install()"}


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_loopwatch_env_var_instruments_a_program_with_no_code_change(tmp_path, loop_kind):
    result = run_python(PROGRAM.format(setup=SETUP[loop_kind]), {"LOOPWATCH": "1", "LOOPWATCH_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["status"]["installed"] and out["status"]["recording"]
    assert out["status"][loop_kind] == "instrumented"
    assert out["header"]["loop_kind"] == loop_kind
    assert out["header"]["service"] == "-c" or out["header"]["service"]  # derived, never empty
    blocking = [d for n, d in zip(out["names"], out["durations"]) if n == "__main__.blocking"]
    assert len(blocking) == 1 and blocking[0] >= 0.05
    assert result.stderr == ""


@pytest.mark.parametrize("value", ["", "0", "off"])
def test_without_loopwatch_set_nothing_is_installed(tmp_path, value):
    code = """
    import asyncio.events, json, sys, types, uvloop, loopwatch
    import asyncio
    async def main():
        await asyncio.sleep(0)
    asyncio.run(main())
    print(json.dumps({
        "stock_run": type(asyncio.events.Handle.__dict__["_run"]) is types.FunctionType,
        "stock_uvloop": "call_soon" not in uvloop.Loop.__dict__,
        "activated": "loopwatch.activate" in sys.modules,
        "shim_loaded": "loopwatch._shim" in sys.modules,
    }))
    """
    env = {"LOOPWATCH_DIR": str(tmp_path)}
    if value:
        env["LOOPWATCH"] = value
    result = run_python(code, env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"stock_run": True, "stock_uvloop": True, "activated": False, "shim_loaded": False}
    assert list(tmp_path.iterdir()) == []


def test_activation_acts_once_although_site_reads_the_pth_twice(tmp_path):
    code = """
    import json, sys, atexit
    from loopwatch import _post_import
    import asyncio
    print(json.dumps({"finders": sum(1 for f in sys.meta_path if f is _post_import._finder),
                      "pending_hooks": {k: len(v) for k, v in _post_import._hooks.items()}}))
    """
    result = run_python(code, {"LOOPWATCH": "1", "LOOPWATCH_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["finders"] == 1
    assert out["pending_hooks"] == {"uvloop": 1}  # asyncio's hook ran on import; uvloop's waits, once


def test_activation_does_not_import_asyncio_into_processes_that_never_use_it(tmp_path):
    result = run_python("import sys; print('asyncio' in sys.modules)", {"LOOPWATCH": "1", "LOOPWATCH_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_explicit_install_api_instruments_without_the_env_var(tmp_path, loop_kind):
    setup = f"import loopwatch; loopwatch.install(dir={str(tmp_path)!r}, service='explicit')\n" + SETUP[loop_kind]
    result = run_python(PROGRAM.format(setup=setup))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["header"]["service"] == "explicit"
    assert "__main__.blocking" in out["names"]
