"""The kind of helper that blocks an event loop from deep inside a request: a module of the app's own
code that an endpoint calls. loopwatch names these lines as the *site* of the blocked time
(`examples.slow_helpers.load_order (examples/slow_helpers.py:LINE)`), and the endpoint that called them
by its route template (`GET /orders/{order_id}`), never by the raw path.
"""
from __future__ import annotations

import time


def load_order(order_id: str, ms: float) -> dict:
    """A synchronous database driver called from async code: the loop sleeps in a syscall."""
    time.sleep(ms / 1000)  # <- blocks the loop (sleeping)
    return {"order_id": order_id}


def render_report(report_id: str, ms: float) -> dict:
    """CPU-bound work on the loop: pure Python, running on the CPU the whole time."""
    deadline = time.perf_counter() + ms / 1000
    rows = 0
    while time.perf_counter() < deadline: rows += 1  # <- blocks the loop (running)
    return {"report_id": report_id, "rows": rows}
