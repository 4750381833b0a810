"""Real processes for the end-to-end tests (loopwatch-agent, uvicorn workers, Prometheus), each in
its own process group with its output in a log file, and the HTTP helpers to talk to them.

The binaries come from the build that scripts/build.sh makes: $BUILD_DIR/agent/loopwatch-agent
(default build/) and the venv $VENV (default .venv) with the shim installed. A missing build is a
failure, not a skip: scripts/test.sh builds both before it runs these tests.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Callable, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def _from_repo(env_var: str, default: str) -> Path:
    path = Path(os.environ.get(env_var, default))
    return path if path.is_absolute() else REPO / path


def venv_python() -> Path:
    return _from_repo("VENV", ".venv") / "bin" / "python"


def agent_binary() -> Path:
    return _from_repo("BUILD_DIR", "build") / "agent" / "loopwatch-agent"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET url -> (status, body); (0, error text) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e)


def http_json(url: str, timeout: float = 5.0):
    status, body = http_get(url, timeout)
    assert status == 200, f"GET {url} -> {status}: {body[:500]}"
    return json.loads(body)


class WorkerConnections:
    """Keep-alive connections to the app, grouped by the pid of the worker that serves each."""

    def __init__(self, base_url: str):
        parsed = urllib.parse.urlsplit(base_url)
        self.host, self.port = parsed.hostname, parsed.port
        self.by_pid: dict[int, list[http.client.HTTPConnection]] = {}
        self.requests_served: Counter[int] = Counter()  # GET /pid answered, per worker pid

    def open(self, count: int, keep_per_pid: int) -> None:
        """Opens count connections at once; keeps at most keep_per_pid per worker."""
        fresh = [http.client.HTTPConnection(self.host, self.port, timeout=10) for _ in range(count)]
        for conn in fresh:
            conn.connect()  # all connect first, so the accepts spread over the workers
        for conn in fresh:
            pid = get_json(conn, "/pid")["pid"]
            self.requests_served[pid] += 1
            kept = self.by_pid.setdefault(pid, [])
            if len(kept) < keep_per_pid:
                kept.append(conn)
            else:
                conn.close()

    def close(self) -> None:
        for conns in self.by_pid.values():
            for conn in conns:
                conn.close()


def get_json(conn: http.client.HTTPConnection, path: str) -> dict:
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200, f"GET {path} -> {response.status}: {body[:300]!r}"
    return json.loads(body)


def connect_to_both_workers(app_url: str, need_on_p: int, need_on_other: int,
                            timeout_s: float = 20) -> tuple[WorkerConnections, int, int]:
    """Opens connections until one worker has need_on_p of them and the other need_on_other."""
    conns = WorkerConnections(app_url)
    deadline = time.monotonic() + timeout_s
    while True:
        conns.open(8, keep_per_pid=max(need_on_p, need_on_other))
        ranked = sorted(conns.by_pid, key=lambda pid: len(conns.by_pid[pid]), reverse=True)
        if (len(ranked) >= 2 and len(conns.by_pid[ranked[0]]) >= need_on_p
                and len(conns.by_pid[ranked[1]]) >= need_on_other):
            return conns, ranked[0], ranked[1]
        if time.monotonic() >= deadline:
            counts = {pid: len(c) for pid, c in conns.by_pid.items()}
            conns.close()
            pytest.fail(f"could not reach both uvicorn workers within {timeout_s} s: "
                        f"connections per pid {counts}")
        time.sleep(0.2)  # a worker may still be starting


class Proc:
    """A process started in its own session (so its children share its process group)."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None, cwd: Path,
                 stdin: int = subprocess.DEVNULL):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "wb")
        # stdin=subprocess.PIPE: the test sends commands with send() (see test_faults.py's workers).
        self.popen = subprocess.Popen(
            argv, stdin=stdin, stdout=self._log, stderr=subprocess.STDOUT,
            env=env, cwd=cwd, start_new_session=True)

    def send(self, line: str) -> None:
        """Writes one line to the stdin of a process started with stdin=subprocess.PIPE."""
        assert self.popen.stdin is not None, f"{self.name} was not started with stdin=subprocess.PIPE"
        self.popen.stdin.write(line.encode() + b"\n")
        self.popen.stdin.flush()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self, max_lines: int = 200) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError as e:
            return f"(cannot read {self.log_path}: {e})"
        head = f"$ {' '.join(self.argv)}\n(exit code: {self.popen.poll()})\n"
        if len(lines) > max_lines:
            head += f"... {len(lines) - max_lines} earlier lines in {self.log_path}\n"
        return head + "\n".join(lines[-max_lines:])

    def stop(self, grace_s: float = 5.0) -> int | None:
        """SIGTERM to the process group, SIGKILL after grace_s; returns the exit code of the leader."""
        if self.alive():
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the group (workers of a dead parent, or a stuck leader) is killed.
        self._signal_group(signal.SIGKILL)
        try:
            self.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        if self.popen.stdin is not None:
            try:
                self.popen.stdin.close()
            except OSError:  # the reader is gone: a broken pipe on the final flush
                pass
        self._log.close()
        return self.popen.returncode

    def kill(self) -> int | None:
        """SIGKILL to the process group at once (no SIGTERM first); waits for the leader."""
        self._signal_group(signal.SIGKILL)
        try:
            return self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return None

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def wait_until(check: Callable[[], T], timeout_s: float, what: str, procs: tuple[Proc, ...] = (),
               interval_s: float = 0.1) -> T:
    """Calls check() until it returns something truthy; fails after timeout_s or if a proc dies."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        for p in procs:
            if not p.alive():
                pytest.fail(f"{p.name} exited (code {p.popen.returncode}) while waiting for {what}")
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


class Stack:
    """The processes of one test. Every start_* waits until the process answers over HTTP."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.procs: list[Proc] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path = REPO,
              stdin: int = subprocess.DEVNULL) -> Proc:
        proc = Proc(name, [str(a) for a in argv], self.workdir / f"{name}.log", env, cwd, stdin)
        self.procs.append(proc)
        return proc

    def start_agent(self, ring_dir: Path, *extra: str, name: str = "agent", drain_ms: int = 50,
                    scan_ms: int = 200) -> tuple[Proc, str]:
        """extra: more flags (each flag at most once); name: a second agent of the same test needs
        its own (it names the log file)."""
        binary = agent_binary()
        if not os.access(binary, os.X_OK):
            pytest.fail(f"{binary} is missing: build it first (bash scripts/build.sh)")
        addr = f"127.0.0.1:{free_port()}"
        proc = self.start(name, [binary, "--web.listen-address", addr, "--ring.dir", ring_dir,
                                 "--drain.interval", str(drain_ms), "--scan.interval", str(scan_ms), *extra])
        url = f"http://{addr}"
        wait_until(lambda: http_get(url + "/metrics", 1)[0] == 200, 10, f"the agent on {url}/metrics", (proc,))
        return proc, url

    def start_uvicorn(self, app: str, env: dict[str, str], *args: str) -> tuple[Proc, str]:
        python = venv_python()
        if not os.access(python, os.X_OK):
            pytest.fail(f"{python} is missing: build it first (bash scripts/build.sh)")
        port = free_port()
        proc = self.start("uvicorn", [python, "-m", "uvicorn", app, "--host", "127.0.0.1",
                                      "--port", str(port), *args], env=env)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_get(url + "/", 1)[0] == 200, 30, f"uvicorn on {url}", (proc,))
        return proc, url

    def start_prometheus(self, target: str, scrape_interval: str = "1s",
                         rule_files: tuple[Path, ...] = ()) -> tuple[Proc, str]:
        """rule_files: rule files Prometheus loads (evaluated every scrape_interval)."""
        config = self.workdir / "prometheus.yml"
        rules = "".join(f"  - '{Path(f).resolve()}'\n" for f in rule_files)
        config.write_text(
            "global:\n"
            f"  scrape_interval: {scrape_interval}\n"
            f"  evaluation_interval: {scrape_interval}\n"
            + (f"rule_files:\n{rules}" if rules else "") +
            "scrape_configs:\n"
            "  - job_name: loopwatch\n"
            "    static_configs:\n"
            f"      - targets: ['{target}']\n")
        addr = f"127.0.0.1:{free_port()}"
        proc = self.start("prometheus", [shutil.which("prometheus") or "/usr/bin/prometheus",
                                         f"--config.file={config}",
                                         f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                                         f"--web.listen-address={addr}"])
        url = f"http://{addr}"
        wait_until(lambda: http_get(url + "/-/ready", 1)[0] == 200, 15, f"prometheus on {url}", (proc,))
        return proc, url

    def stop_all(self) -> None:
        for proc in reversed(self.procs):  # the app before the agent, the agent before Prometheus
            proc.stop()
