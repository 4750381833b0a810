"""Eager tasks (CPython 3.12+, asyncio.eager_task_factory): a task's first step runs inside
create_task, outside every handle. loopwatch times it as the task's own step, named after its
coroutine, takes that time out of the callback that created the task (so nothing is counted
twice), and names the step in the in-flight slot while it runs. On both loops; on CPython before
3.12 there are no eager tasks and these tests SKIP, saying so."""
from __future__ import annotations

import asyncio
import sys
import time

import pytest

import loopwatch
import loopwatch._eager_tasks
from loopwatch import _shim

from conftest import recorded
from test_stall_watchdog import AgentView

pytestmark = pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are CPython 3.12+")


@pytest.fixture
def eager_loop(loop, loop_kind):
    """The loop, if stock eager tasks work on it. uvloop 0.22+ on CPython 3.13 passes eager_start= to
    task factories, which 3.13.0's asyncio.eager_task_factory does not take (TypeError, stock too)."""
    if loop_kind == "uvloop":
        import inspect

        import uvloop

        stock = loopwatch._eager_tasks._saved["eager_task_factory"]
        passes = "eager_start" in inspect.signature(uvloop.Loop.create_task).parameters and sys.version_info >= (3, 13)
        if passes and "eager_start" not in inspect.signature(stock).parameters:
            pytest.skip(f"stock uvloop {uvloop.__version__} cannot use Python {sys.version.split()[0]}'s eager_task_factory")
    return loop


def test_status_and_the_factories_say_eager_tasks_are_instrumented(ring_dir):
    assert loopwatch.status()["eager_tasks"] == "instrumented"
    assert type(asyncio.eager_task_factory) is _shim.EagerFactory
    assert asyncio.tasks.eager_task_factory is asyncio.eager_task_factory
    assert type(asyncio.create_eager_task_factory(asyncio.Task)) is _shim.EagerFactory


def test_an_eager_first_step_is_its_tasks_own_sample_and_not_its_creators(eager_loop):
    loop = eager_loop
    seen = {}

    async def eager_body():
        view = AgentView.of(loop)
        seen["inflight"] = view.inflight()[1]  # what a stall report would name right now
        time.sleep(0.05)  # blocks inside create_task: the eager first step
        await asyncio.sleep(0)
        return "done"

    async def creator():
        task = asyncio.get_running_loop().create_task(eager_body())
        seen["done_before_await"] = task.done()
        return await task

    async def main():
        await asyncio.sleep(0)  # the ring exists from here on
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)
        return await creator()

    assert loop.run_until_complete(main()) == "done"
    samples = recorded(loop)
    steps = [s for s in samples if s.name.startswith("Task.__step of test_an_eager_first_step_is_its_tasks_own_sample_and_not_its_creators.<locals>.eager_body()")]
    assert len(steps) == 2, [s.name for s in samples]  # the eager first step and the one after sleep(0)
    first = steps[0]
    assert first.duration >= 0.05 and first.kind == "ready" and first.lag is None
    # The step that called create_task ran main() (creator() is awaited inline): its own time only.
    mains = [s for s in samples if "main()" in s.name]
    assert mains and all(s.duration < 0.05 for s in mains), [(s.name, s.duration) for s in mains]
    assert sum(s.duration >= 0.05 for s in samples) == 1  # the 50 ms are counted once
    names = _shim.read_ring(_shim.loop_status(loop)["file"])["names"]
    assert names[seen["inflight"]] == first.name  # the in-flight slot named the eager step


def test_an_eager_task_that_finishes_in_its_first_step_is_timed_and_named(eager_loop):
    loop = eager_loop

    async def quick():
        time.sleep(0.02)
        return 7

    async def main():
        await asyncio.sleep(0)
        loop.set_task_factory(asyncio.create_eager_task_factory(asyncio.Task))
        task = loop.create_task(quick())
        assert task.done()  # no await: the whole coroutine ran eagerly
        return task.result()

    assert loop.run_until_complete(main()) == 7
    quick_steps = [s for s in recorded(loop) if "quick()" in s.name]
    assert len(quick_steps) == 1 and quick_steps[0].duration >= 0.02


def test_a_failing_eager_factory_call_raises_as_stock_and_records_nothing(eager_loop):
    loop = eager_loop

    def bad_constructor(coro, **kwargs):
        raise RuntimeError("no task for you")

    async def body():
        return 1

    async def main():
        await asyncio.sleep(0)
        before = len(recorded(loop))
        loop.set_task_factory(asyncio.create_eager_task_factory(bad_constructor))
        coro = body()
        try:
            loop.create_task(coro)
        except RuntimeError as exc:
            coro.close()
            return str(exc), before

    message, before = loop.run_until_complete(main())
    assert message == "no task for you"
    assert not [s for s in recorded(loop)[before:] if "body()" in s.name]
