"""A FastAPI app with one endpoint per kind of event-loop behaviour loopwatch should show.

Run it from the repository root (LOOPWATCH=1 turns the shim on in every worker):

    LOOPWATCH=1 .venv/bin/python -m uvicorn examples.demo_app:app --workers 2 --loop uvloop

GET /              hello: the cheapest request, a baseline for callback duration.
GET /pid           {"pid": ...}: which worker served this connection (tests use it to reach a worker).
GET /block?ms=200  `async def` that calls time.sleep(): THE BUG loopwatch exists to catch. The whole
                   loop stops for ms; every other request on this worker waits. Shows up as a
                   callback_duration observation >= ms (attributed to uvicorn's request Task step,
                   `Task.__step of RequestResponseCycle.run_asgi() at uvicorn/...`) and as loop lag
                   of the requests that were due meanwhile.
GET /sleep?ms=50   awaits asyncio.sleep(): the healthy way to wait. Takes ms of wall time but holds
                   the loop for microseconds; a timer callback fires after ms (lag ~0 unless blocked).
GET /spin?ms=100   busy-loops in pure Python for ms: CPU-bound work on the loop, as bad as /block
                   for everyone else, but the time is spent computing instead of sleeping.
GET /fanout?n=100  creates n small tasks and gathers them: many short callbacks, a burst of ready
                   handles (loop_handles) and enqueue-to-run lag that grows with n.
GET /orders/{order_id}?ms=300    calls examples.slow_helpers.load_order, which blocks in time.sleep:
                   loopwatch_blocked_seconds_total names endpoint "GET /orders/{order_id}", handler
                   examples.demo_app.get_order and the helper's line as the site, state "sleeping".
GET /reports/{report_id}?ms=300  calls examples.slow_helpers.render_report, which spins in pure
                   Python: the same names for its own route, state "running".
"""

from __future__ import annotations

import asyncio
import os
import time

from fastapi import FastAPI, Query

from examples import slow_helpers

app = FastAPI(title="loopwatch demo")


@app.get("/")
async def hello() -> dict:
    return {"hello": "loopwatch"}


@app.get("/pid")
async def pid() -> dict:
    return {"pid": os.getpid()}


@app.get("/block")
async def block(ms: float = Query(200.0, ge=0, le=60_000)) -> dict:
    time.sleep(ms / 1000)  # deliberately blocks the event loop
    return {"blocked_ms": ms, "pid": os.getpid()}


@app.get("/sleep")
async def sleep(ms: float = Query(50.0, ge=0, le=60_000)) -> dict:
    await asyncio.sleep(ms / 1000)
    return {"slept_ms": ms, "pid": os.getpid()}


@app.get("/spin")
async def spin(ms: float = Query(100.0, ge=0, le=60_000)) -> dict:
    deadline = time.perf_counter() + ms / 1000
    iterations = 0
    while time.perf_counter() < deadline:
        iterations += 1
    return {"spun_ms": ms, "iterations": iterations, "pid": os.getpid()}


async def _tiny(i: int) -> int:
    await asyncio.sleep(0)
    return i


@app.get("/fanout")
async def fanout(n: int = Query(100, ge=0, le=100_000)) -> dict:
    results = await asyncio.gather(*(_tiny(i) for i in range(n)))
    return {"tasks": n, "sum": sum(results), "pid": os.getpid()}


@app.get("/orders/{order_id}")
async def get_order(order_id: str, ms: float = Query(300.0, ge=0, le=60_000)) -> dict:
    return {**slow_helpers.load_order(order_id, ms), "pid": os.getpid()}


@app.get("/reports/{report_id}")
async def get_report(report_id: str, ms: float = Query(300.0, ge=0, le=60_000)) -> dict:
    return {**slow_helpers.render_report(report_id, ms), "pid": os.getpid()}
