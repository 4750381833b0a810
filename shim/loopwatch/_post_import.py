"""Run a function right after a module is first imported (a ``sys.meta_path`` finder that wraps the
module's loader). Used to hook asyncio and uvloop at their import, not before: activation at
interpreter start must not import them into every process."""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import Callable

_hooks: dict[str, list[Callable[[ModuleType], None]]] = {}


class _HookingLoader(importlib.abc.Loader):
    def __init__(self, loader, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        for hook in _hooks.pop(self._name, []):
            hook(module)

    def __getattr__(self, attr):  # get_code, get_source, ... for tools that ask the loader
        return getattr(self._loader, attr)


class _Finder(importlib.abc.MetaPathFinder):
    _busy: set[str] = set()

    def find_spec(self, fullname, path, target=None):
        if fullname not in _hooks or fullname in self._busy:
            return None
        self._busy.add(fullname)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy.discard(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _HookingLoader(spec.loader, fullname)
        return spec


_finder = _Finder()


def when_imported(name: str, hook: Callable[[ModuleType], None]) -> None:
    """Call ``hook(module)`` now if ``name`` is imported, else right after its first import."""
    module = sys.modules.get(name)
    if module is not None:
        hook(module)
        return
    _hooks.setdefault(name, []).append(hook)
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
