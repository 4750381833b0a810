"""Turns loopwatch on at interpreter start. Imported by ``loopwatch.pth`` only when ``LOOPWATCH`` is
set to a true value; Python caches the module, so it acts once even though Debian's site.py reads
the venv's .pth files twice. It installs hooks that wait for asyncio and uvloop to be imported, so a
process that never uses them never imports them, and a uvicorn worker is instrumented before its
loop exists. It never raises: a failure is printed once and the program runs unmonitored.
"""
from __future__ import annotations

import os
import sys

TRUE_VALUES = ("1", "true", "yes", "on")


def enabled_by_environment(environ=os.environ) -> bool:
    return environ.get("LOOPWATCH", "").strip().lower() in TRUE_VALUES


def _activate() -> None:
    if not enabled_by_environment():
        return
    try:
        from . import loops

        loops.install()
    except Exception as exc:  # the application must start even if loopwatch cannot
        print(f"loopwatch: not activated: {type(exc).__name__}: {exc}", file=sys.stderr)


_activate()
