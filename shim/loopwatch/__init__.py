"""loopwatch: measure every asyncio/uvloop callback in production at C speed.

Set ``LOOPWATCH=1`` in a process's environment (with this package installed) and every loop in it is
instrumented from interpreter start; run ``loopwatch-agent`` to collect the samples. Code that wants
to opt in explicitly calls :func:`install`. Importing this package alone changes nothing.

PYTEST_DONT_REWRITE: the pytest11 entry point (loopwatch.pytest_plugin) makes pytest mark this
package for assertion rewriting; with LOOPWATCH=1 it is imported before pytest starts, and without
this marker every such pytest run would warn (or fail, under ``filterwarnings = error``).
"""
from __future__ import annotations

from typing import Any

__all__ = ["install", "uninstall", "pause", "resume", "status", "__version__"]
__version__ = "0.1.0"


def install(*, dir: str | None = None, service: str | None = None, ring_capacity: int | None = None) -> None:
    """Instrument asyncio now and uvloop now or when it is imported. Idempotent.

    ``dir`` (default ``$LOOPWATCH_DIR`` or ``/dev/shm/loopwatch``) is where ring files go; ``service``
    (default ``$LOOPWATCH_SERVICE`` or the program's name) labels this process's series.
    Never raises because the ring directory is unusable: recording is then off and
    :func:`status` says why.
    """
    from . import loops

    loops.install(dir=dir, service=service, ring_capacity=ring_capacity)


def uninstall() -> None:
    """Put the stock loop methods back. Loops already recording close their rings when collected."""
    from . import loops

    loops.uninstall()


def pause() -> None:
    """Stop recording on every loop of this process, and on loops created later, until :func:`resume`.

    Callbacks keep running exactly as before; they are just not measured (no samples, no in-flight
    slot). The agent can also pause a single loop; either pause stops it. Idempotent.
    """
    from . import loops

    loops.pause()


def resume() -> None:
    """Undo :func:`pause` (a loop the agent paused stays paused until the agent resumes it)."""
    from . import loops

    loops.resume()


def status() -> dict[str, Any]:
    """What is instrumented, where rings go, each loop's ring and why recording is off, if it is.

    ``asyncio``, ``uvloop`` and ``eager_tasks`` say ``instrumented`` or why not (e.g. a CPython
    version the hook was not checked against runs stock); ``attribution`` which packages count as
    the user's code when slow callbacks are sampled; ``paused`` says whether :func:`pause` is
    in effect; each loop tells ``busy_time`` (and ``busy_time_detail``: how, or why it is off),
    ``paused_by_agent``, ``agent_attached``, its ``watchdog`` thread and ``watchdog_wakeups``
    (stall captures answered).
    """
    from . import loops

    return loops.status()
