"""Eager tasks (CPython 3.12+): ``asyncio.eager_task_factory`` runs a task's first step inside
``create_task``, outside every loop handle. At asyncio's import, loopwatch replaces
``asyncio.eager_task_factory`` (in ``asyncio`` and ``asyncio.tasks``) by a C wrapper around the stock
factory that times that step as the task's own (``_shim.time_eager_factory``), and makes
``asyncio.create_eager_task_factory`` return such wrappers. Code that took the stock factory before
loopwatch was installed (``loopwatch.install()`` called late) keeps it: its first steps then count
as part of the callback that created the task, and ``status()["eager_tasks"]`` says so."""
from __future__ import annotations

import functools
from types import ModuleType

_saved: dict[str, object] = {}


def patch(asyncio: ModuleType) -> str:
    """Returns what status() says about eager tasks."""
    from . import _shim

    tasks = asyncio.tasks
    stock_factory = getattr(tasks, "eager_task_factory", None)
    stock_create = getattr(tasks, "create_eager_task_factory", None)
    if stock_factory is None or stock_create is None:
        return "not in this Python (eager tasks are CPython 3.12+)"
    if type(stock_factory) is _shim.EagerFactory:
        return "instrumented"
    _saved.update(eager_task_factory=stock_factory, create_eager_task_factory=stock_create)

    @functools.wraps(stock_create)
    def create_eager_task_factory(custom_task_constructor):
        return _shim.time_eager_factory(stock_create(custom_task_constructor))

    timed = _shim.time_eager_factory(stock_factory)
    for module in (tasks, asyncio):
        module.eager_task_factory = timed
        module.create_eager_task_factory = create_eager_task_factory
    return "instrumented"


def unpatch() -> None:
    import sys

    asyncio = sys.modules.get("asyncio")
    if asyncio is None or not _saved:
        return
    for module in (asyncio.tasks, asyncio):
        for name, value in _saved.items():
            setattr(module, name, value)
    _saved.clear()
