"""The servers loopwatch is tested under, as the test venv ($VENV) runs them: how each is started with
two workers on a chosen loop, and which modules it needs. A server whose modules the venv lacks is
skipped with that reason (Debian's stack has no hypercorn or aiohttp), never passed.

| name              | processes                                   | app                        |
|-------------------|---------------------------------------------|----------------------------|
| uvicorn-httptools | uvicorn --workers 2 (multiprocessing spawn) | examples/demo_app.py       |
| uvicorn-h11       | the same with --http h11                    | examples/demo_app.py       |
| gunicorn-uvicorn  | gunicorn -w 2, uvicorn's worker (fork)      | examples/demo_app.py       |
| hypercorn         | hypercorn --workers 2 (spawn)               | examples/demo_app.py       |
| aiohttp           | gunicorn -w 2, aiohttp's worker (fork)      | examples/aiohttp_app.py    |
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from e2e_processes import venv_python

# Every server keeps idle connections for 60 s: the test holds keep-alive connections to each worker
# while it finds both (default keep-alive timeouts are 2 to 5 s).


@dataclass(frozen=True)
class Server:
    name: str
    modules: tuple[str, ...]  # besides the loop's own
    argv: Callable[[Path, str, int], list[str]]  # (python, loop, port) -> command line
    endpoint_callback: str  # what the name of the callback a blocking request runs in contains

    def missing(self, loop: str) -> str | None:
        """Why this server cannot run in the venv on `loop`, or None."""
        modules = self.modules + (("uvloop",) if loop == "uvloop" else ())
        code = ("import importlib.util, sys\n"
                "missing = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]\n"
                "sys.exit(', '.join(missing) if missing else 0)")
        result = subprocess.run([str(venv_python()), "-c", code, *modules], capture_output=True, text=True, timeout=60)
        missing = result.stderr.strip()
        return f"{missing} not installed" if result.returncode else None


def _uvicorn(http: str) -> Callable[[Path, str, int], list[str]]:
    return lambda py, loop, port: [py, "-m", "uvicorn", "examples.demo_app:app", "--workers", "2", "--loop", loop,
                                   "--http", http, "--host", "127.0.0.1", "--port", str(port),
                                   "--timeout-keep-alive", "60"]


def _gunicorn(app: str, worker: dict[str, str]) -> Callable[[Path, str, int], list[str]]:
    return lambda py, loop, port: [py, "-m", "gunicorn", app, "--workers", "2", "--worker-class", worker[loop],
                                   "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "2",
                                   "--keep-alive", "60"]


SERVERS = {
    s.name: s
    for s in (
        Server("uvicorn-httptools", ("uvicorn", "httptools", "fastapi"), _uvicorn("httptools"), "run_asgi"),
        Server("uvicorn-h11", ("uvicorn", "h11", "fastapi"), _uvicorn("h11"), "run_asgi"),
        Server("gunicorn-uvicorn", ("gunicorn", "uvicorn", "fastapi"),
               _gunicorn("examples.demo_app:app", {"asyncio": "examples.gunicorn_workers.AsyncioWorker",
                                                   "uvloop": "examples.gunicorn_workers.UvloopWorker"}),
               "run_asgi"),
        Server("hypercorn", ("hypercorn", "fastapi"),
               lambda py, loop, port: [py, "-m", "hypercorn", "examples.demo_app:app", "--workers", "2",
                                       "--worker-class", loop, "--bind", f"127.0.0.1:{port}",
                                       "--keep-alive", "60"],
               "_handle() at hypercorn/"),
        Server("aiohttp", ("aiohttp", "gunicorn"),
               _gunicorn("examples.aiohttp_app:app", {"asyncio": "aiohttp.GunicornWebWorker",
                                                      "uvloop": "aiohttp.GunicornUVLoopWebWorker"}),
               "aiohttp/web_protocol.py"),  # RequestHandler.start() (3.9+), ._handle_request() (3.8)
    )
}
