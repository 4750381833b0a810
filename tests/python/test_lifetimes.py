"""Nothing kept alive: every object the shim touches is freed when the program drops it, exactly as
stock. Each scenario runs in a fresh interpreter with the cyclic garbage collector disabled (as
services that tune or freeze the GC run), once stock and once with LOOPWATCH=1, and counts which
of its weakly referenced objects are still alive. Stock and shim counts must be equal, and the
scenarios are written so that stock frees everything (a shim that keeps one object alive fails).

Covered: server and client protocols with their transports (the issue's reproduction, plus a
protocol class made per connection and one with __slots__), the asyncio selector whose select the
busy probe wraps, the loops themselves (closed, and dropped unclosed with callbacks pending, which
then need gc.collect() stock too, and which stock uvloop never frees), Tasks, futures and the
callbacks handed to the loop.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import LOOP_KINDS

PRELUDE = r'''
import asyncio, gc, json, sys, weakref
gc.disable()
KIND = {kind!r}
if KIND == "uvloop":
    import uvloop
    new_loop = uvloop.new_event_loop
else:
    new_loop = asyncio.SelectorEventLoop
REFS = {{}}
def track(tag, obj):
    REFS.setdefault(tag, []).append(weakref.ref(obj))
def alive():
    return {{tag: sum(r() is not None for r in refs) for tag, refs in sorted(REFS.items())}}
def totals():
    return {{tag: len(refs) for tag, refs in sorted(REFS.items())}}
def recorded(loop):
    import os
    if os.environ.get("LOOPWATCH") != "1":
        return None
    from loopwatch import _shim
    st = _shim.loop_status(loop)
    return None if st is None else st["samples_written"]
'''

ECHO = r'''
class P(asyncio.Protocol):
    def connection_made(self, tr):
        self.tr = tr
        track("server protocol", self)
        track("server transport", tr)
    def data_received(self, d):
        self.tr.write(d)
        self.tr.close()

class Slotted(asyncio.Protocol):
    __slots__ = ("tr", "__weakref__")
    def connection_made(self, tr):
        self.tr = tr
        track("slotted protocol", self)
    def data_received(self, d):
        self.tr.write(d)
        self.tr.close()

def per_connection_class():
    class Fresh(P):  # a class made per connection: the class must be freed too (with gc, as stock)
        pass
    track("per-connection class", Fresh)
    return Fresh()

class Client(asyncio.Protocol):
    def __init__(self, done):
        self.done = done
        track("client protocol", self)
    def connection_made(self, tr):
        track("client transport", tr)
        tr.write(b"x")
    def data_received(self, d):
        pass
    def connection_lost(self, exc):
        self.done.set_result(None)

async def main():
    loop = asyncio.get_running_loop()
    for factory in (P, Slotted, per_connection_class):
        srv = await loop.create_server(factory, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        for _ in range(20):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"x"); await r.read(); w.close(); await w.wait_closed()
        for _ in range(5):
            done = loop.create_future()
            await loop.create_connection(lambda: Client(done), "127.0.0.1", port)
            await done
        await asyncio.sleep(0.05)
        srv.close()
        await srv.wait_closed()

loop = new_loop()
loop.run_until_complete(main())
samples = recorded(loop)
loop.close()
del loop
before_gc = alive()
gc.collect()  # classes are always cyclic (cls.__mro__ holds cls): the one thing stock needs gc for
print(json.dumps({"alive": before_gc, "alive_after_gc": alive(), "totals": totals(), "samples": samples}))
'''

LOOPS = r'''
async def work(n):
    fut = asyncio.get_running_loop().create_future()
    track("future", fut)
    asyncio.get_running_loop().call_later(0.001, fut.set_result, n)
    return await fut

def callback(box):
    box.append(1)

class Box(list):
    pass

async def main():
    tasks = [asyncio.ensure_future(work(n)) for n in range(20)]
    for t in tasks:
        track("task", t)
    box = Box()
    track("callback argument", box)
    asyncio.get_running_loop().call_soon(callback, box)
    return sum(await asyncio.gather(*tasks))

closed = []
for _ in range(3):  # loops that ran and were closed
    loop = new_loop()
    track("closed loop", loop)
    if KIND == "asyncio":
        track("selector", loop._selector)
    closed.append(loop.run_until_complete(main()))
    samples = recorded(loop)
    loop.close()
    del loop
# A loop dropped unclosed with callbacks still queued: its handles reference it, a cycle that stock
# frees only at gc.collect(); the shim must not turn it into a leak gc cannot free.
loop = new_loop()
track("unclosed loop", loop)
loop.run_until_complete(main())
loop.call_soon(callback, Box())
loop.call_later(3600, callback, Box())
del loop
before_gc = alive()
gc.collect()
print(json.dumps({"alive": before_gc, "alive_after_gc": alive(), "totals": totals(), "samples": samples,
                  "results": closed}))
'''

SCENARIOS = {"protocols": ECHO, "loops and tasks": LOOPS}


def run(code: str, loop_kind: str, shim: bool, tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPWATCH")}
    if shim:
        env.update(LOOPWATCH="1", LOOPWATCH_DIR=str(tmp_path / "rings"), LOOPWATCH_SERVICE="lifetimes")
    script = PRELUDE.format(kind=loop_kind) + textwrap.dedent(code)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_objects_are_freed_when_the_program_drops_them_as_stock(tmp_path, loop_kind, scenario):
    stock = run(SCENARIOS[scenario], loop_kind, False, tmp_path)
    shim = run(SCENARIOS[scenario], loop_kind, True, tmp_path)
    assert shim["samples"], "the shim run recorded nothing: it would prove nothing"
    assert shim["totals"] == stock["totals"] and all(stock["totals"].values()), stock["totals"]
    # Without the cyclic GC: exactly what stock frees is freed.
    assert shim["alive"] == stock["alive"], f"stock {stock['alive']}, with loopwatch {shim['alive']}"
    # With it: everything (but an unclosed uvloop loop with a timer pending, which libuv's handle
    # keeps alive stock too). The scenarios are written so that stock frees what they track.
    assert shim["alive_after_gc"] == stock["alive_after_gc"]
    stock_left = {tag: n for tag, n in stock["alive_after_gc"].items() if n}
    assert stock_left == ({"unclosed loop": 1} if loop_kind == "uvloop" and scenario == "loops and tasks" else {})
    if scenario == "protocols":  # the case: no protocol waits for the GC (transports do, stock, before 3.12)
        assert {tag: n for tag, n in shim["alive"].items() if n and "protocol" in tag} == {}
