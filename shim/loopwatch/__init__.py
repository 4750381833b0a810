"""loopwatch: measure every asyncio/uvloop callback in production at C speed.

Set ``LOOPWATCH=1`` in a process's environment (with this package installed) and every loop in it is
instrumented from interpreter start; run ``loopwatch-agent`` to collect the samples. Code that wants
to opt in explicitly calls :func:`install`. Importing this package alone changes nothing.
"""
from __future__ import annotations

from typing import Any

__all__ = ["install", "uninstall", "status", "__version__"]
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


def status() -> dict[str, Any]:
    """What is instrumented, where rings go, each loop's ring and why recording is off, if it is."""
    from . import loops

    return loops.status()
