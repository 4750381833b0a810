"""Readable callback names. Called by the C++ hook once per new callback key (code object, builtin
method or type), never per callback, so clarity wins over speed here. Must never raise."""
from __future__ import annotations

import functools
import os
import sys
import types

MAX_NAME = 1024


def default_service() -> str:
    """``$LOOPWATCH_SERVICE``, else the program: the -m module (``python -m uvicorn`` -> ``uvicorn``)
    or the script's name."""
    env = os.environ.get("LOOPWATCH_SERVICE", "").strip()
    if env:
        return env
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        name = spec.name
        return name[: -len(".__main__")] if name.endswith(".__main__") else name
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-m") else "python"
    base = os.path.basename(argv0)
    return base[:-3] if base.endswith(".py") else base


def short_path(filename: str) -> str:
    """The path relative to the longest sys.path entry that holds it: ``uvicorn/main.py``."""
    best = ""
    for entry in sys.path:
        if entry and filename.startswith(entry.rstrip(os.sep) + os.sep) and len(entry) > len(best):
            best = entry.rstrip(os.sep) + os.sep
    return filename[len(best) :] if best else filename


def _qualified(func) -> str:
    module = getattr(func, "__module__", None) or "?"
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or type(func).__qualname__
    return f"{module}.{qualname}"


def _task_step(task) -> str:
    return _coroutine_step(task.get_coro())


def _coroutine_step(coro) -> str:
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    if code is not None:
        qualname = getattr(code, "co_qualname", None) or getattr(coro, "__qualname__", code.co_name)  # 3.10: no co_qualname
        return f"Task.__step of {qualname}() at {short_path(code.co_filename)}:{code.co_firstlineno}"
    return f"Task.__step of {type(coro).__module__}.{type(coro).__qualname__}"


def _describe(callback) -> str:
    while isinstance(callback, functools.partial):
        callback = callback.func
    kind = type(callback)
    if kind.__name__ == "TaskStepMethWrapper":
        return _task_step(callback.__self__)
    # An eager task's first step (eager_tasks.cpp) is named by its coroutine, or the task it became.
    if isinstance(callback, (types.CoroutineType, types.GeneratorType)):
        return _coroutine_step(callback)
    asyncio = sys.modules.get("asyncio")  # never import it here: naming must not load modules
    if asyncio is not None and isinstance(callback, asyncio.Task):
        return _task_step(callback)
    if isinstance(callback, types.MethodType):
        return _qualified(callback.__func__)
    if isinstance(callback, types.FunctionType):
        return _qualified(callback)
    if isinstance(callback, types.BuiltinMethodType):
        owner = callback.__self__
        if asyncio is not None and isinstance(owner, asyncio.Task):  # task_wakeup: resumes after an await
            return _task_step(owner)
        if owner is None or isinstance(owner, types.ModuleType):
            return f"{getattr(owner, '__name__', 'builtins')}.{callback.__name__}"
        return f"{type(owner).__module__}.{type(owner).__qualname__}.{callback.__name__}"
    if hasattr(callback, "__func__") and hasattr(callback, "__self__"):  # e.g. a bound Cython method
        return _qualified(callback.__func__)
    if hasattr(callback, "__qualname__") and hasattr(callback, "__module__") and not isinstance(callback, type):
        return _qualified(callback)
    return f"{kind.__module__}.{kind.__qualname__}"


def describe(callback) -> str:
    try:
        return _describe(callback)[:MAX_NAME]
    except Exception:
        return f"<unnamed {type(callback).__qualname__}>"[:MAX_NAME]
