"""I/O coverage: wraps the protocol factory handed to create_server, create_connection and their
kin, so each protocol the loop creates gets timed callbacks (``_shim.instrument_protocol``: the
first instance of a class has the class's ``data_received`` & co. replaced by C TimedMethods, which
bind like functions; nothing is stored on instances, so no reference cycle is made). uvloop calls
``data_received`` & co. from libuv, outside every handle: without this, request parsing in uvicorn
would be invisible. Python runs here once per connection, never per callback."""
from __future__ import annotations

import functools
import sys
import weakref

FACTORY_METHODS = (
    "create_server",
    "create_connection",
    "create_unix_server",
    "create_unix_connection",
    "connect_accepted_socket",
    "create_datagram_endpoint",
)

# Protocols some of whose callbacks could not be timed (a C class, or instance attributes that shadow
# them): that time stays inside whatever ran them, or unattributed on uvloop.
unattributed_protocols = 0
_patched: list[tuple[type, str, object]] = []  # (loop class, name, original in the class dict or None)
# Protocol classes whose callbacks were replaced by TimedMethods: weak, so that a class the program
# drops (one made per test, say) is freed as it would be without loopwatch.
_timed_classes: weakref.WeakSet[type] = weakref.WeakSet()


def _instrumenting(factory):
    from . import _shim

    def make_protocol():
        global unattributed_protocols
        protocol = factory()
        try:
            _, untimed, patched_class = _shim.instrument_protocol(protocol)
            if patched_class:
                _timed_classes.add(type(protocol))
            if untimed:
                unattributed_protocols += 1
        except Exception as exc:  # never break a connection because of loopwatch
            print(f"loopwatch: protocol not instrumented: {exc}", file=sys.stderr)
        return protocol

    return make_protocol


def _wrap(original):
    @functools.wraps(original)
    async def method(self, protocol_factory, *args, **kwargs):
        return await original(self, _instrumenting(protocol_factory), *args, **kwargs)

    method._loopwatch_original = original
    return method


def patch(loop_class: type, *, in_place: bool) -> None:
    """Wrap each factory method of `loop_class`. in_place=False: patch the class that defines the
    method (asyncio: BaseEventLoop, _UnixSelectorEventLoop); True: patch loop_class itself (uvloop.Loop,
    whose methods live in a Cython base that takes no attributes)."""
    for name in FACTORY_METHODS:
        owner = loop_class if in_place else next((c for c in loop_class.__mro__ if name in c.__dict__), None)
        if owner is None or owner.__name__ == "AbstractEventLoop":
            continue
        original = getattr(owner, name)
        if hasattr(original, "_loopwatch_original"):
            continue
        _patched.append((owner, name, owner.__dict__.get(name)))
        setattr(owner, name, _wrap(original))


def unpatch() -> None:
    while _patched:
        owner, name, original = _patched.pop()
        if original is None:
            delattr(owner, name)
        else:
            setattr(owner, name, original)
    from . import _shim

    for cls in list(_timed_classes):
        for name, value in list(vars(cls).items()):
            if type(value) is _shim.TimedMethod:
                setattr(cls, name, value.__wrapped__)
    _timed_classes.clear()
