"""Loop busy time (protocol 1.1 busy_ticks), on asyncio and uvloop: it grows by the time the loop
spent running, never less than the callbacks it ran, and not by the time it sat idle in its poll."""
from __future__ import annotations

import asyncio
import time

from loopwatch import _shim

from conftest import recorded


def busy_seconds(loop) -> float:
    return _shim.read_ring(_shim.loop_status(loop)["file"])["header"]["busy_seconds"]


def test_busy_time_counts_running_not_idle(loop):
    def block():
        time.sleep(0.04)

    async def warm_up():
        await asyncio.sleep(0.01)

    async def workload():
        for _ in range(5):  # 200 ms of running callbacks
            asyncio.get_running_loop().call_soon(block)
            await asyncio.sleep(0)
        await asyncio.sleep(0.3)  # 300 ms idle in the poll
        for _ in range(3):  # a few short callbacks to refresh the counter after the idle time
            await asyncio.sleep(0.02)

    loop.run_until_complete(warm_up())
    assert _shim.loop_status(loop)["busy_time"] is True
    before_busy = busy_seconds(loop)
    before_samples = len(recorded(loop))
    loop.run_until_complete(workload())
    busy = busy_seconds(loop) - before_busy
    callbacks = sum(s.duration for s in recorded(loop)[before_samples:])
    assert callbacks >= 0.2
    assert busy >= callbacks * 0.98  # the loop is busy at least while its callbacks run
    assert busy < callbacks + 0.1    # ... and the 300 ms in the poll is not busy time
