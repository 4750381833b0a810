"""End to end under every server users run (tests/e2e/servers.py): uvicorn's own workers (httptools
and h11), gunicorn with uvicorn's worker (forked), hypercorn, and aiohttp under gunicorn, each with
two workers, LOOPWATCH=1 and a real agent, on asyncio and on uvloop. With the venv of the newest
PyPI releases this is the runtime matrix's server column (scripts/matrix.py).

Per server and loop, against a baseline: one worker (P) gets three /sleep?ms=50 requests and, while
their timers are pending, one /block?ms=200. Then the agent shows
  - a series of its own for each worker pid (loopwatch_callbacks_total), all of kind `loop`;
  - the 200 ms block as a callback of at least 0.2 s on P (an /api/slow event naming P, the
    endpoint's callback, and its duration), and a slow callback counted;
  - lag of at least 0.1 s on P: the sleepers' timers ran late, behind the block;
  - busy seconds on P of at least the block (loop time outside the poll, both loops);
and `promtool check metrics` accepts the exposition.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from e2e_processes import connect_to_both_workers, free_port, get_json, http_get, http_json, venv_python, wait_until
from promtext import Metrics, parse
from servers import SERVERS
from test_uvicorn_end_to_end import BLOCK_MS, SLOW_S, stall_worker

LOOPS = ["asyncio", "uvloop"]


def scrape(agent_url: str) -> Metrics | None:
    status, body = http_get(agent_url + "/metrics")
    return parse(body) if status == 200 else None


def total(metrics: Metrics, family: str, **labels: str) -> float:
    return sum(s.value for s in metrics.samples(family, **labels))


def late(metrics: Metrics, service: str, pid: int) -> float:
    return sum(h.count_above(SLOW_S) for h in metrics.histograms("loopwatch_loop_lag_seconds", service=service, pid=str(pid)))


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("server", sorted(SERVERS))
def test_a_block_in_one_worker_is_seen_under_every_server(server, loop, stack, ring_dir):
    spec = SERVERS[server]
    if why := spec.missing(loop):
        pytest.skip(why)
    service = f"e2e-{server}"
    agent, agent_url = stack.start_agent(ring_dir, "--slow.event-threshold", "150")
    env = dict(os.environ, LOOPWATCH="1", LOOPWATCH_DIR=str(ring_dir), LOOPWATCH_SERVICE=service)
    port = free_port()
    app = stack.start(server, spec.argv(venv_python(), loop, port), env=env)
    app_url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_get(app_url + "/", 1)[0] == 200, 45, f"{server} on {app_url}", (app,))

    conns, pid_p, pid_other = connect_to_both_workers(app_url, need_on_p=4, need_on_other=1, timeout_s=45)
    try:
        def baseline() -> Metrics | None:  # both workers' rings drained up to their /pid requests
            m = scrape(agent_url)
            pids = m.label_values("loopwatch_callbacks_total", "pid") if m else set()
            return m if {str(pid_p), str(pid_other)} <= pids else None

        before = wait_until(baseline, 15, f"series for workers {pid_p} and {pid_other}", (agent, app), 0.2)
        results = stall_worker(conns.by_pid[pid_p])
        assert results["block"]["pid"] == pid_p and results["block_s"] >= BLOCK_MS / 1000, results
        get_json(conns.by_pid[pid_other][0], "/")
    finally:
        conns.close()

    def stall_seen() -> tuple[Metrics, list[dict]] | None:
        m = scrape(agent_url)
        slow = [e for e in http_json(agent_url + "/api/slow")["events"] if int(e["pid"]) == pid_p]
        if m and slow and late(m, service, pid_p) > late(before, service, pid_p):
            return m, slow
        return None

    metrics, slow = wait_until(stall_seen, 15, f"the block and the late timers of worker {pid_p}", (agent, app), 0.2)
    labels = {"service": service, "pid": str(pid_p)}
    # The block: one callback of >= 0.2 s, named after the request's Task step.
    assert any(e["duration_seconds"] >= BLOCK_MS / 1000 and spec.endpoint_callback in e["callback"] for e in slow), slow
    assert total(metrics, "loopwatch_slow_callbacks_total", **labels) > total(before, "loopwatch_slow_callbacks_total", **labels)
    # Busy time: the loop was busy at least while it was blocked.
    busy = total(metrics, "loopwatch_loop_busy_seconds_total", **labels)
    assert busy >= BLOCK_MS / 1000, f"busy seconds of {pid_p}: {busy}"
    # A series for each worker.
    pids = metrics.label_values("loopwatch_callbacks_total", "pid")
    assert {str(pid_p), str(pid_other)} <= pids, pids  # (gunicorn 23+'s master runs a loop of its own too)
    kinds = {s.labels["kind"] for pid in (pid_p, pid_other)
             for s in metrics.samples("loopwatch_loop_info", service=service, pid=str(pid))}
    assert kinds == {loop}, kinds

    _, exposition = http_get(agent_url + "/metrics")
    lint = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True, text=True)
    assert lint.returncode == 0, f"promtool check metrics failed:\n{lint.stdout}{lint.stderr}"
    app.stop()
    assert agent.stop() == 0
