"""Loop integration: decides what to instrument and hands the classes to the C++ hooks.

asyncio: ``Handle._run``, ``BaseEventLoop._call_soon`` and ``BaseEventLoop._add_callback`` are
replaced by C++ methods, only on CPython minor versions whose asyncio they were checked against;
elsewhere asyncio runs stock and :func:`status` says so. uvloop: C++ ``call_soon``,
``call_soon_threadsafe``, ``call_later`` and ``call_at`` on ``uvloop.Loop``. Both: protocol factories
are wrapped for I/O coverage (``_protocols``). Nothing here runs per callback.
"""
from __future__ import annotations

import atexit
import os
import sys
from types import ModuleType
from typing import Any

from . import _attribution, _eager_tasks, _names, _post_import, _protocols

DEFAULT_DIR = "/dev/shm/loopwatch"
# asyncio's Handle._run, _call_soon, _add_callback and format_helpers were compared line by line with
# the C++ hook for these versions (shim/README.md, "Runtimes"); the stock-behaviour tests run on each.
ASYNCIO_CHECKED_VERSIONS = {(3, 10), (3, 11), (3, 12), (3, 13)}

_state: dict[str, Any] = {
    "installed": False,
    "asyncio": "not imported yet",
    "uvloop": "not imported yet",
    "eager_tasks": "not imported yet",
    "dir": None,
    "service": None,
}


def _ring_capacity(value: int | None) -> int:
    if value is None:
        raw = os.environ.get("LOOPWATCH_RING_CAPACITY", "")
        if not raw.strip():
            from . import _shim

            return _shim.DEFAULT_RING_CAPACITY
        value = int(raw)
    return value


def _instrument_asyncio(asyncio: ModuleType) -> None:
    version = sys.version_info[:2]
    if version not in ASYNCIO_CHECKED_VERSIONS:
        _state["asyncio"] = f"stock: CPython {version[0]}.{version[1]} is not a version the asyncio hook was checked against"
        return
    import inspect  # asyncio has imported it already
    from asyncio import base_events, events, format_helpers

    from . import _shim

    format_source = format_helpers._format_callback_source
    # 3.13 added `debug=` (arguments are shown only in debug mode); stock Handle._run passes it.
    takes_debug = "debug" in inspect.signature(format_source).parameters
    _shim.install_asyncio(events.Handle, events.TimerHandle, base_events.BaseEventLoop, format_source, takes_debug)
    _protocols.patch(asyncio.SelectorEventLoop, in_place=False)
    _state["eager_tasks"] = _eager_tasks.patch(asyncio)
    _state["asyncio"] = "instrumented"


def _instrument_uvloop(uvloop: ModuleType) -> None:
    from . import _shim

    # Busy time asks libuv, which is uvloop.loop's own (PyPI wheels) or its dependency (Debian).
    _shim.set_uvloop_library(getattr(sys.modules.get("uvloop.loop"), "__file__", None) or "")
    _shim.install_uvloop(uvloop.Loop)
    _protocols.patch(uvloop.Loop, in_place=True)
    _state["uvloop"] = "instrumented"


def _guarded(key: str, hook):
    def run(module: ModuleType) -> None:
        try:
            hook(module)
        except Exception as exc:  # never break the import of the user's event loop
            _state[key] = f"stock: {type(exc).__name__}: {exc}"
            print(f"loopwatch: {key} not instrumented: {exc}", file=sys.stderr)

    return run


def install(*, dir: str | None = None, service: str | None = None, ring_capacity: int | None = None) -> None:
    from . import _shim

    ring_dir = dir or os.environ.get("LOOPWATCH_DIR") or DEFAULT_DIR
    # The service name is resolved when the first ring is created, not now: a multiprocessing spawn
    # child only learns its real sys.argv after interpreter start.
    _shim.configure(ring_dir, service or _names.default_service, _names.describe, _ring_capacity(ring_capacity))
    _attribution.install()
    _state["dir"] = ring_dir
    _state["service"] = service
    if _state["installed"]:
        return
    _state["installed"] = True
    # shutdown = close_all + no new watchdog threads: every watchdog is joined before finalization.
    atexit.register(_shim.shutdown)
    # The process forks with the threads it would have without loopwatch: no watchdog thread is
    # copied mid-capture, and CPython 3.12+ does not warn that a multi-threaded process forks.
    os.register_at_fork(before=_shim.before_fork, after_in_parent=_shim.after_fork_in_parent)
    _post_import.when_imported("asyncio", _guarded("asyncio", _instrument_asyncio))
    _post_import.when_imported("uvloop", _guarded("uvloop", _instrument_uvloop))


def uninstall() -> None:
    from . import _shim

    _shim.uninstall_asyncio()
    _shim.uninstall_uvloop()
    _protocols.unpatch()
    _eager_tasks.unpatch()
    _state.update(installed=False, asyncio="stock: uninstalled", uvloop="stock: uninstalled",
                  eager_tasks="stock: uninstalled")


def pause() -> None:
    from . import _shim

    _shim.set_paused(True)


def resume() -> None:
    from . import _shim

    _shim.set_paused(False)


def status() -> dict[str, Any]:
    """A snapshot for humans and tests: what is hooked, and each loop's ring."""
    from . import _shim

    loops = _shim.loops()
    error = _shim.first_error()
    return {
        "installed": _state["installed"],
        "paused": _shim.paused(),
        "asyncio": _state["asyncio"],
        "uvloop": _state["uvloop"],
        "eager_tasks": _state["eager_tasks"],
        "attribution": _attribution.summary() if _state["installed"] else None,
        "dir": _state["dir"],
        "service": _state["service"] or (_names.default_service() if _state["installed"] else None),
        "recording": any(loop["state"] == "recording" for loop in loops),
        "error": error,
        "unattributed_protocols": _protocols.unattributed_protocols,
        "loops": loops,
    }
