"""Functional and integrity tests of what the shim records, on asyncio and on uvloop: every kind of
callback yields a sample with the right name and kind, and known sleeps and delays come back as
wall time and lag within a tolerance band."""
from __future__ import annotations

import asyncio
import time

from conftest import recorded


def named(samples, fragment):
    return [s for s in samples if fragment in s.name]


def blocking_callback():
    time.sleep(0.05)


def test_call_soon_callback_is_sampled_with_its_name_and_wall_time(loop):
    async def main():
        asyncio.get_running_loop().call_soon(blocking_callback)
        await asyncio.sleep(0.01)

    loop.run_until_complete(main())
    hits = named(recorded(loop), "test_samples.blocking_callback")
    assert len(hits) == 1
    assert hits[0].kind == "ready"
    assert 0.05 <= hits[0].duration < 0.5
    assert hits[0].lag is not None and hits[0].lag < 0.05


def test_late_timer_reports_its_lateness_as_lag(loop):
    def timer_callback():
        pass

    async def main():
        running = asyncio.get_running_loop()
        running.call_later(0.01, timer_callback)  # due in 10 ms ...
        time.sleep(0.1)  # ... but the loop is blocked for 100 ms
        await asyncio.sleep(0.05)

    loop.run_until_complete(main())
    hits = named(recorded(loop), "timer_callback")
    assert len(hits) == 1
    assert hits[0].kind == "timer"
    assert 0.08 <= hits[0].lag < 0.5  # ran ~90 ms after its due time


def test_call_at_timer_lag_is_measured_against_loop_time(loop):
    def at_callback():
        pass

    async def main():
        running = asyncio.get_running_loop()
        running.call_at(running.time() + 0.02, at_callback)
        time.sleep(0.07)
        await asyncio.sleep(0.02)

    loop.run_until_complete(main())
    hits = named(recorded(loop), "at_callback")
    assert len(hits) == 1 and hits[0].kind == "timer"
    assert 0.035 <= hits[0].lag < 0.5


def test_on_time_timer_has_small_lag(loop):
    def punctual():
        pass

    async def main():
        asyncio.get_running_loop().call_later(0.02, punctual)
        await asyncio.sleep(0.05)

    loop.run_until_complete(main())
    hits = named(recorded(loop), "punctual")
    # On time means far below the late-timer case (>= 80 ms); 40 ms leaves room for a loaded machine.
    assert len(hits) == 1 and hits[0].lag < 0.04


def test_task_steps_are_named_after_the_coroutine_with_file_and_line(loop):
    async def handle_request():
        await asyncio.sleep(0)
        time.sleep(0.03)
        await asyncio.sleep(0)

    async def main():
        await asyncio.gather(handle_request(), handle_request())

    loop.run_until_complete(main())
    samples = recorded(loop)
    steps = named(samples, "Task.__step of test_task_steps_are_named_after_the_coroutine_with_file_and_line.<locals>.handle_request()")
    assert len(steps) == 6  # 3 steps per task (start, after each await), 2 tasks
    assert all("test_samples.py:" in s.name for s in steps)
    assert sum(1 for s in steps if s.duration >= 0.03) == 2


def test_queued_ready_callback_lag_covers_time_behind_a_blocking_one(loop):
    def first():
        time.sleep(0.06)

    def second():
        pass

    async def main():
        running = asyncio.get_running_loop()
        running.call_soon(first)
        running.call_soon(second)
        await asyncio.sleep(0.01)

    loop.run_until_complete(main())
    (hit,) = named(recorded(loop), "second")
    assert hit.kind == "ready"
    assert 0.06 <= hit.lag < 0.5


def test_future_done_callbacks_are_sampled(loop):
    seen = []

    def on_done(fut):
        seen.append(fut.result())

    async def main():
        fut = asyncio.get_running_loop().create_future()
        fut.add_done_callback(on_done)
        fut.set_result(7)
        await asyncio.sleep(0.01)

    loop.run_until_complete(main())
    assert seen == [7]
    assert len(named(recorded(loop), "on_done")) == 1


def test_call_soon_threadsafe_from_another_thread_is_sampled_on_the_loop(loop):
    import threading

    def from_thread():
        pass

    async def main():
        running = asyncio.get_running_loop()
        t = threading.Thread(target=lambda: running.call_soon_threadsafe(from_thread))
        t.start()
        t.join()
        await asyncio.sleep(0.02)

    loop.run_until_complete(main())
    assert len(named(recorded(loop), "from_thread")) == 1


def test_handle_count_reflects_queued_callbacks(loop):
    def noop():
        pass

    async def main():
        running = asyncio.get_running_loop()
        for _ in range(50):
            running.call_soon(noop)
        await asyncio.sleep(0.01)

    loop.run_until_complete(main())
    hits = named(recorded(loop), "noop")
    assert len(hits) == 50
    # The first of 50 queued callbacks sees the other 49 (and more) still held by the loop.
    assert max(h.handles for h in hits) >= 49
    assert min(h.handles for h in hits) < max(h.handles for h in hits)


def broken(x):
    raise ValueError("boom")


def exception_contexts(loop_kind):
    """Runs a raising call_soon and call_later on a fresh loop; returns what the handler saw."""
    if loop_kind == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.SelectorEventLoop()
    contexts = []
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))
    loop.call_soon(broken, 42)
    loop.call_later(0.01, broken, 43)  # due well after the first iteration on either loop
    loop.run_until_complete(asyncio.sleep(0.05))
    seen = [(c["message"], type(c["exception"]), str(c["exception"]), repr(c["handle"]).split(" when=")[0]) for c in contexts]
    return loop, seen


def test_callback_exception_reaches_the_handler_exactly_as_without_the_shim(ring_dir, loop_kind):
    import loopwatch

    loopwatch.uninstall()
    try:
        stock_loop, stock = exception_contexts(loop_kind)
    finally:
        loopwatch.install(dir=str(ring_dir), service="pytest")
    shim_loop, shimmed = exception_contexts(loop_kind)
    assert len(stock) == 2
    assert shimmed == stock
    assert len(named(recorded(shim_loop), "test_samples.broken")) == 2  # failing callbacks are still measured
    stock_loop.close()
    shim_loop.close()


def test_keyboard_interrupt_in_a_callback_propagates_out_of_the_loop(loop):
    import pytest

    def interrupt():
        raise KeyboardInterrupt

    loop.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()


def test_contextvars_of_the_scheduling_context_are_visible_in_the_callback(loop):
    import contextvars

    var = contextvars.ContextVar("var", default="unset")
    seen = []

    async def main():
        var.set("request-1")
        asyncio.get_running_loop().call_soon(lambda: seen.append(var.get()))
        ctx = contextvars.Context()
        ctx.run(var.set, "explicit")
        asyncio.get_running_loop().call_soon(lambda: seen.append(var.get()), context=ctx)
        await asyncio.sleep(0.01)

    loop.run_until_complete(main())
    assert seen == ["request-1", "explicit"]
