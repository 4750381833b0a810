"""Fixtures for the end-to-end tests.

`stack` starts real processes (see e2e_processes.py) and stops every one of them when the test ends,
passed or failed (SIGTERM to the process group, SIGKILL after a grace period). When a test fails,
the tail of each process's log is attached to its failure report.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from e2e_processes import Stack


@pytest.fixture
def stack(request, tmp_path, ring_dir):
    # Depends on ring_dir so that the processes stop before their ring directory is removed.
    s = Stack(tmp_path)
    request.node._loopwatch_stack = s
    yield s
    s.stop_all()


@pytest.fixture
def ring_dir():
    """A fresh ring directory, on tmpfs like the default /dev/shm/loopwatch when /dev/shm exists."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="loopwatch-e2e-", dir=base))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the log of every process the test started, and the ring files, to its report."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    s = getattr(item, "_loopwatch_stack", None)
    for proc in s.procs if s is not None else ():
        report.sections.append((f"log of {proc.name} (pid {proc.pid})", proc.log()))
    rings = getattr(item, "funcargs", {}).get("ring_dir")
    if isinstance(rings, Path) and rings.is_dir():
        files = [f"{f.name}  {f.stat().st_size} bytes" for f in sorted(rings.iterdir())]
        report.sections.append((f"ring dir {rings}", "\n".join(files) or "(empty: no process wrote a ring)"))
