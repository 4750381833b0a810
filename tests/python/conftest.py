"""Fixtures for the shim's Python tests. Every loop test runs on asyncio and on uvloop (STYLE.md
rule 10). The shim is installed once per session into a private ring directory; each test gets a
fresh loop, hence a fresh ring, and reads it back with the same decoder the agent uses."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import pytest

import loopwatch
from loopwatch import _shim

LOOP_KINDS = ["asyncio", "uvloop"]


@dataclass
class Recorded:
    """One sample, decoded: name resolved, seconds as floats."""

    name: str
    kind: str
    duration: float
    lag: float | None
    handles: int


def uvloop_missing() -> str | None:
    """Why uvloop cannot be tested here (no release for this Python installed), or None."""
    import importlib.util

    return None if importlib.util.find_spec("uvloop") else f"uvloop is not installed for Python {sys.version.split()[0]}"


@pytest.fixture(scope="session")
def ring_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("rings")
    loopwatch.install(dir=str(path), service="pytest")
    if uvloop_missing() is None:
        import uvloop  # noqa: F401  (imported after install: the post-import hook instruments it)

        assert loopwatch.status()["uvloop"] == "instrumented"
    return path


def pytest_runtest_setup(item):
    """A uvloop case on an interpreter with no uvloop release installed is a SKIP that says so."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    if params.get("loop_kind") == "uvloop" and (why := uvloop_missing()):
        pytest.skip(why)


@pytest.fixture(params=LOOP_KINDS)
def loop_kind(request):
    return request.param


@pytest.fixture
def loop(ring_dir, loop_kind):
    if loop_kind == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.SelectorEventLoop()
    errors: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield loop
    loop.close()
    # Teardown fails a test on an unhandled loop exception (the uvloop test base does the same).
    assert not errors, f"unhandled loop exceptions: {errors}"


def recorded(loop) -> list[Recorded]:
    """Every sample the loop's ring holds, in order."""
    status = _shim.loop_status(loop)
    assert status is not None, "this loop never ran an instrumented callback"
    assert status["state"] == "recording", status
    ring = _shim.read_ring(status["file"])
    assert ring["names_ok"]
    names = ring["names"]
    return [
        Recorded(names.get(s["name_id"], "other"), s["kind"], s["duration"], s["lag"], s["handles"]) for s in ring["samples"]
    ]


def run_python(
    code: str, env_extra: dict[str, str] | None = None, timeout: float = 60, prefix: list[str] | None = None
) -> subprocess.CompletedProcess:
    """Runs code in a fresh interpreter of this venv (so loopwatch.pth applies), LOOPWATCH unset
    unless env_extra sets it. `prefix` runs the interpreter under a wrapper (unshare, setpriv)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPWATCH")}
    env.update(env_extra or {})
    argv = [*(prefix or []), sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
