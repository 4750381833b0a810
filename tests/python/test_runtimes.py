"""The interpreter and loops this run is on are instrumented, and say so in status(). Run on every
interpreter of the runtime matrix (scripts/matrix.py sets LOOPWATCH_EXPECT_PYTHON, so a run on the
wrong interpreter fails instead of passing for another one). A CPython minor version or uvloop
release nobody checked runs stock, and status() says why.
"""
from __future__ import annotations

import json
import os
import sys

import pytest

from conftest import run_python

STATUS = r"""
import asyncio, json, sys, loopwatch
from loopwatch import _shim
out = {"python": "%d.%d" % sys.version_info[:2]}
async def main():
    await asyncio.sleep(0.01)
loop = asyncio.SelectorEventLoop()
loop.run_until_complete(main())
out["asyncio_loop"] = _shim.loop_status(loop)
try:
    import uvloop
except ImportError as exc:
    out["uvloop_missing"] = str(exc)
else:
    out["uvloop_version"] = uvloop.__version__
    uv = uvloop.new_event_loop()
    uv.run_until_complete(main())
    out["uvloop_loop"] = _shim.loop_status(uv)
out["status"] = loopwatch.status()
print(json.dumps(out))
"""


def status_with_loopwatch(tmp_path, code: str = STATUS) -> dict:
    result = run_python(code, {"LOOPWATCH": "1", "LOOPWATCH_DIR": str(tmp_path / "rings")})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_this_is_the_interpreter_the_matrix_asked_for():
    expected = os.environ.get("LOOPWATCH_EXPECT_PYTHON")
    if not expected:
        pytest.skip("not run by scripts/matrix.py (LOOPWATCH_EXPECT_PYTHON unset)")
    assert "%d.%d" % sys.version_info[:2] == expected


def test_asyncio_and_uvloop_are_instrumented_on_this_interpreter(tmp_path):
    out = status_with_loopwatch(tmp_path)
    status = out["status"]
    assert status["asyncio"] == "instrumented", status
    assert out["asyncio_loop"]["state"] == "recording" and out["asyncio_loop"]["samples_written"] > 0
    assert out["asyncio_loop"]["busy_time"] is True, out["asyncio_loop"]["busy_time_detail"]
    expected_eager = "instrumented" if sys.version_info >= (3, 12) else "not in this Python (eager tasks are CPython 3.12+)"
    assert status["eager_tasks"] == expected_eager
    if "uvloop_missing" in out:
        pytest.skip(f"uvloop is not installed for Python {out['python']}: {out['uvloop_missing']}")
    assert status["uvloop"] == "instrumented", status
    uv = out["uvloop_loop"]
    assert uv["kind"] == "uvloop" and uv["state"] == "recording" and uv["samples_written"] > 0, uv
    # Busy time on every uvloop release, found without knowing the Loop's C layout.
    assert uv["busy_time"] is True, f"uvloop {out['uvloop_version']}: {uv['busy_time_detail']}"


def test_an_unchecked_python_version_is_reported_stock_after_install(tmp_path):
    code = r"""
import json, loopwatch, loopwatch.loops as loops
loops.ASYNCIO_CHECKED_VERSIONS = set()
loopwatch.install(dir=%r)
import asyncio
from loopwatch import _shim
loop = asyncio.SelectorEventLoop()
loop.run_until_complete(asyncio.sleep(0))
print(json.dumps({"status": loopwatch.status(), "loop": _shim.loop_status(loop), "handle_run": type(vars(asyncio.events.Handle)["_run"]).__name__}))
""" % str(tmp_path / "rings")
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["status"]["asyncio"].startswith("stock: CPython %d.%d is not a version" % sys.version_info[:2]), out["status"]
    assert out["handle_run"] == "function" and out["loop"] is None  # the stock Python method, nothing recorded
