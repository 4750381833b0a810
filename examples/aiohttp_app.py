"""The demo's endpoints as an aiohttp web app, for the servers loopwatch is tested under.

    LOOPWATCH=1 .venv/bin/python -m gunicorn examples.aiohttp_app:app -w 2 -k aiohttp.GunicornWebWorker
    LOOPWATCH=1 .venv/bin/python -m aiohttp.web -H 127.0.0.1 -P 8080 examples.aiohttp_app:make_app

GET /, /pid, /block?ms=, /sleep?ms=, /spin?ms=: as in demo_app.py.
"""

from __future__ import annotations

import asyncio
import os
import time

from aiohttp import web


def _ms(request: web.Request, default: float) -> float:
    return min(max(float(request.query.get("ms", default)), 0.0), 60_000.0)


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"hello": "loopwatch"})


async def pid(request: web.Request) -> web.Response:
    return web.json_response({"pid": os.getpid()})


async def block(request: web.Request) -> web.Response:
    ms = _ms(request, 200.0)
    time.sleep(ms / 1000)  # deliberately blocks the event loop
    return web.json_response({"blocked_ms": ms, "pid": os.getpid()})


async def sleep(request: web.Request) -> web.Response:
    ms = _ms(request, 50.0)
    await asyncio.sleep(ms / 1000)
    return web.json_response({"slept_ms": ms, "pid": os.getpid()})


async def spin(request: web.Request) -> web.Response:
    ms = _ms(request, 100.0)
    deadline = time.perf_counter() + ms / 1000
    while time.perf_counter() < deadline:
        pass
    return web.json_response({"spun_ms": ms, "pid": os.getpid()})


def make_app(argv: list[str] | None = None) -> web.Application:
    application = web.Application()
    application.add_routes([web.get("/", hello), web.get("/pid", pid), web.get("/block", block),
                            web.get("/sleep", sleep), web.get("/spin", spin)])
    return application


app = make_app()
