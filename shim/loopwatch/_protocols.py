"""I/O coverage: wraps the protocol factory handed to create_server, create_connection and their
kin, so each protocol the loop creates gets timed callbacks (``_shim.instrument_protocol``). uvloop
calls ``data_received`` & co. from libuv, outside every handle: without this, request parsing in
uvicorn would be invisible. Python runs here once per connection, never per callback."""
from __future__ import annotations

import functools
import sys

FACTORY_METHODS = (
    "create_server",
    "create_connection",
    "create_unix_server",
    "create_unix_connection",
    "connect_accepted_socket",
    "create_datagram_endpoint",
)

# Protocols whose instances take no attributes (e.g. __slots__): their callbacks stay unattributed.
unattributed_protocols = 0
_patched: list[tuple[type, str, object]] = []  # (class, name, original in the class dict or None)


def _instrumenting(loop, factory, is_uvloop: bool):
    from . import _shim

    def make_protocol():
        global unattributed_protocols
        protocol = factory()
        try:
            if _shim.instrument_protocol(protocol, loop, is_uvloop) == 0:
                unattributed_protocols += 1
        except Exception as exc:  # never break a connection because of loopwatch
            print(f"loopwatch: protocol not instrumented: {exc}", file=sys.stderr)
        return protocol

    return make_protocol


def _wrap(original, is_uvloop: bool):
    @functools.wraps(original)
    async def method(self, protocol_factory, *args, **kwargs):
        return await original(self, _instrumenting(self, protocol_factory, is_uvloop), *args, **kwargs)

    method._loopwatch_original = original
    return method


def patch(loop_class: type, *, is_uvloop: bool, in_place: bool) -> None:
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
        setattr(owner, name, _wrap(original, is_uvloop))


def unpatch() -> None:
    while _patched:
        owner, name, original = _patched.pop()
        if original is None:
            delattr(owner, name)
        else:
            setattr(owner, name, original)
