"""Gunicorn worker classes that run the demo on a chosen loop: uvicorn's worker (from the
`uvicorn-worker` package, or `uvicorn.workers` in uvicorn releases that still ship it) with the loop
fixed instead of "auto". Gunicorn forks its workers from the master, so each has its own ring.

    LOOPWATCH=1 .venv/bin/python -m gunicorn examples.demo_app:app -w 2 \\
        -k examples.gunicorn_workers.UvloopWorker
"""

from __future__ import annotations

try:
    from uvicorn_worker import UvicornWorker
except ImportError:  # uvicorn < 0.30 (Debian 12's 0.17) ships the worker itself
    from uvicorn.workers import UvicornWorker


class AsyncioWorker(UvicornWorker):
    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "loop": "asyncio"}


class UvloopWorker(UvicornWorker):
    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "loop": "uvloop"}
