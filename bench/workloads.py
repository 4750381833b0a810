"""One benchmark run in a fresh interpreter: ``python workloads.py CONFIG LOOP WORKLOAD N``.

Prints one JSON line: CPU seconds (process time) spent running N loop callbacks of the workload, and
how many callbacks that was. Started by callback_overhead.py once per (round, config, loop, workload),
so no run inherits another's warm caches, patches or garbage.

CONFIG: bare            stock loop
        loopwatch       loopwatch.install() (the C++ hooks); the caller runs the agent to drain
        python-wrapper  the technique today's Python monitors use, written here as a reference: a
                        Python-level wrapper around every callback (asyncio: Handle._run replaced by a
                        Python function that times the stock one; uvloop: call_soon/call_later/call_at
                        wrap each callback in a Python closure that times it)
WORKLOAD: call_soon  a callback that reschedules itself with call_soon
          task       one Task doing ``await asyncio.sleep(0)`` (one Task step per iteration)
          timer      a callback that reschedules itself with call_later(0)
          echo       a protocol echo server and client over loopback TCP, ping-pong of 64 bytes
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time


def install_python_wrapper(loop_kind: str) -> None:
    samples = []  # what a Python monitor keeps: (name, duration) per callback

    if loop_kind == "asyncio":
        from asyncio import events

        stock_run = events.Handle._run

        def timed_run(self):
            start = time.perf_counter_ns()
            stock_run(self)
            samples.append((self._callback, time.perf_counter_ns() - start))
            if len(samples) > 4096:
                samples.clear()

        events.Handle._run = timed_run
        return

    import uvloop

    base = uvloop.Loop.__mro__[1]

    def wrap(callback):
        def timed(*args):
            start = time.perf_counter_ns()
            try:
                return callback(*args)
            finally:
                samples.append((callback, time.perf_counter_ns() - start))
                if len(samples) > 4096:
                    samples.clear()

        return timed

    def call_soon(self, callback, *args, context=None):
        return base.call_soon(self, wrap(callback), *args, context=context)

    def call_later(self, delay, callback, *args, context=None):
        return base.call_later(self, delay, wrap(callback), *args, context=context)

    def call_at(self, when, callback, *args, context=None):
        return base.call_at(self, when, wrap(callback), *args, context=context)

    uvloop.Loop.call_soon = call_soon
    uvloop.Loop.call_later = call_later
    uvloop.Loop.call_at = call_at


def new_loop(loop_kind: str):
    if loop_kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.SelectorEventLoop()


def chain(loop, n: int, schedule) -> int:
    remaining = [n]

    def step():
        remaining[0] -= 1
        if remaining[0] > 0:
            schedule(step)
        else:
            loop.stop()

    schedule(step)
    loop.run_forever()
    return n


def run_call_soon(loop, n: int) -> int:
    return chain(loop, n, loop.call_soon)


def run_timer(loop, n: int) -> int:
    return chain(loop, n, lambda cb: loop.call_later(0, cb))


def run_task(loop, n: int) -> int:
    async def stepper():
        for _ in range(n):
            await asyncio.sleep(0)

    loop.run_until_complete(stepper())
    return n


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class PingPong(asyncio.Protocol):
    def __init__(self, rounds: int, done: asyncio.Future):
        self.rounds = rounds
        self.done = done

    def connection_made(self, transport):
        self.transport = transport
        transport.write(b"x" * 64)

    def data_received(self, data):
        self.rounds -= 1
        if self.rounds > 0:
            self.transport.write(data)
        elif not self.done.done():
            self.done.set_result(None)


def run_echo(loop, n: int) -> int:
    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        done = loop.create_future()
        transport, _ = await loop.create_connection(lambda: PingPong(n, done), "127.0.0.1", port)
        await done
        transport.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())
    return n  # round trips: 2 data_received (server + client) each


WORKLOADS = {"call_soon": run_call_soon, "task": run_task, "timer": run_timer, "echo": run_echo}


def main(argv: list[str]) -> int:
    config, loop_kind, workload, n = argv[0], argv[1], argv[2], int(argv[3])
    if config == "loopwatch":
        import loopwatch

        loopwatch.install(dir=os.environ["LOOPWATCH_DIR"], service="bench")
        if loop_kind == "uvloop":
            import uvloop  # noqa: F401  (hooked on import)
    elif config == "python-wrapper":
        install_python_wrapper(loop_kind)
    elif config != "bare":
        raise SystemExit(f"unknown config {config}")
    loop = new_loop(loop_kind)
    WORKLOADS[workload](loop, max(n // 10, 1))  # warm-up: first ring creation, caches, names
    start = time.process_time()
    count = WORKLOADS[workload](loop, n)
    cpu = time.process_time() - start
    status = None
    if config == "loopwatch":
        from loopwatch import _shim

        status = _shim.loop_status(loop)
    loop.close()
    print(json.dumps({"cpu": cpu, "callbacks": count, "status": status}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
