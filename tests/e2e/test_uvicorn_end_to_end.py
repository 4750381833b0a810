"""End to end: loopwatch-agent + `uvicorn examples.demo_app:app --workers 2` with LOOPWATCH=1 + a real
Prometheus, on asyncio and on uvloop.

One worker (P) gets three `/sleep?ms=50` requests and, while they wait on their timers, one
`/block?ms=200` that holds its loop with time.sleep(0.2). Against a baseline scraped just before, the
test proves that the agent's /metrics then shows:
  - callback-duration series for both worker pids;
  - for P, a new callback observation above 0.1 s, also in the named series whose `callback` label
    contains "run_asgi" (the endpoint body runs in the first step of uvicorn's request Task), whose
    sum grew by >= 0.2 s;
  - for P, a new loop-lag observation above 0.1 s: the sleep timers became due while the loop was
    blocked and ran ~150 ms late;
and that /api/status lists both rings alive, Prometheus scrapes the agent with `up == 1` and sees
loopwatch_callbacks_total for both pids, and `promtool check metrics` accepts the exposition.

Workers are reached deterministically: every keep-alive connection stays with the worker that
accepted it, so the test opens connections until it has enough on each worker (asking GET /pid).
"""

from __future__ import annotations

import http.client
import math
import os
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass

import pytest

from e2e_processes import connect_to_both_workers, get_json, http_get, http_json, venv_python, wait_until
from promtext import Metrics, parse

SERVICE = "e2e-demo"
BLOCK_MS = 200
SLEEP_MS = 50
SLOW_S = 0.1  # a bucket bound well below the stall: nothing else on an idle worker takes this long


def stall_worker(conns: list[http.client.HTTPConnection]) -> dict[str, object]:
    """On one worker: 3 x /sleep?ms=50 at once, then /block?ms=200 while their timers are pending."""
    sleepers, blocker = conns[:3], conns[3]
    results: dict[str, object] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(sleepers) + 1)

    def sleep_request(i: int, conn: http.client.HTTPConnection) -> None:
        try:
            start.wait()
            t0 = time.monotonic()
            results[f"sleep{i}"] = get_json(conn, f"/sleep?ms={SLEEP_MS}")
            results[f"sleep{i}_s"] = time.monotonic() - t0
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=sleep_request, args=(i, c)) for i, c in enumerate(sleepers)]
    for t in threads:
        t.start()
    start.wait()
    # The sleep requests reach the idle worker in well under 30 ms; their 50 ms timers are then
    # pending when the block starts, become due while it holds the loop and run ~150 ms late.
    time.sleep(0.030)
    t0 = time.monotonic()
    results["block"] = get_json(blocker, f"/block?ms={BLOCK_MS}")
    results["block_s"] = time.monotonic() - t0
    for t in threads:
        t.join(timeout=15)
    if errors:
        raise errors[0]
    return results


@dataclass(frozen=True)
class WorkerView:
    """What /metrics says about one worker, summed over its loops."""

    callbacks: float            # loopwatch_callback_duration_seconds_count
    slow_callbacks: float       # ... observations above SLOW_S
    run_asgi_count: float       # loopwatch_named_callback_duration_seconds{callback=~".*run_asgi.*"}
    run_asgi_slow: float
    run_asgi_sum: float
    late_callbacks: float       # loopwatch_loop_lag_seconds observations above SLOW_S

    @staticmethod
    def of(metrics: Metrics, pid: int) -> "WorkerView":
        labels = {"pid": str(pid), "service": SERVICE}
        durations = metrics.histograms("loopwatch_callback_duration_seconds", **labels)
        named = [h for h in metrics.histograms("loopwatch_named_callback_duration_seconds", **labels)
                 if "run_asgi" in h.labels.get("callback", "")]
        lag = metrics.histograms("loopwatch_loop_lag_seconds", **labels)
        return WorkerView(
            callbacks=sum(h.count for h in durations),
            slow_callbacks=sum(h.count_above(SLOW_S) for h in durations),
            run_asgi_count=sum(h.count for h in named),
            run_asgi_slow=sum(h.count_above(SLOW_S) for h in named),
            run_asgi_sum=sum(h.sum for h in named),
            late_callbacks=sum(h.count_above(SLOW_S) for h in lag),
        )


def stall_evidence(before: WorkerView, after: WorkerView) -> dict[str, bool]:
    """What changed on the stalled worker across the stall; every entry must be True.

    Deltas, not totals: a worker's first step (uvicorn's Server.serve() starting up) alone can take
    more than 0.1 s, so only observations that arrived after the baseline prove the stall was seen.
    """
    return {
        f"a callback above {SLOW_S} s": after.slow_callbacks - before.slow_callbacks >= 1,
        f"a run_asgi Task step above {SLOW_S} s": after.run_asgi_slow - before.run_asgi_slow >= 1,
        f"run_asgi wall time grew by >= {BLOCK_MS / 1000} s":
            after.run_asgi_sum - before.run_asgi_sum >= BLOCK_MS / 1000,
        f"a callback that started more than {SLOW_S} s late":
            after.late_callbacks - before.late_callbacks >= 1,
    }


def describe(metrics: Metrics, pid: int) -> str:
    """The series of pid that the assertions look at, for the failure message."""
    lines = []
    for family in ("loopwatch_callback_duration_seconds", "loopwatch_named_callback_duration_seconds",
                   "loopwatch_loop_lag_seconds"):
        for h in metrics.histograms(family, pid=str(pid)):
            above = h.count_above(SLOW_S) if SLOW_S in h.buckets and math.inf in h.buckets else "?"
            lines.append(f"  {family}{h.labels}: count={h.count} sum={h.sum:.4f} above {SLOW_S}s={above}")
    return "\n".join(lines) or "  (no series for this pid)"


def scrape(agent_url: str) -> Metrics | None:
    status, body = http_get(agent_url + "/metrics")
    return parse(body) if status == 200 else None


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_stall_in_one_uvicorn_worker_is_measured_and_attributed(loop, stack, ring_dir):
    check = subprocess.run([str(venv_python()), "-c", "import loopwatch"], capture_output=True, text=True)
    assert check.returncode == 0, f"the shim is not installed in {venv_python()}: {check.stderr}"

    agent, agent_url = stack.start_agent(ring_dir)
    env = dict(os.environ, LOOPWATCH="1", LOOPWATCH_DIR=str(ring_dir), LOOPWATCH_SERVICE=SERVICE)
    # --timeout-keep-alive: the test holds idle keep-alive connections while it finds both workers.
    app, app_url = stack.start_uvicorn("examples.demo_app:app", env, "--workers", "2", "--loop", loop,
                                       "--http", "httptools", "--timeout-keep-alive", "60")

    conns, pid_p, pid_other = connect_to_both_workers(app_url, need_on_p=4, need_on_other=2)
    try:
        # Baseline: wait until the agent has drained every /pid request P served (a ring is FIFO,
        # so P's start-up samples are in too).
        def baseline() -> Metrics | None:
            m = scrape(agent_url)
            served = conns.requests_served[pid_p]
            return m if m and WorkerView.of(m, pid_p).run_asgi_count >= served else None

        before_metrics = wait_until(
            baseline, 10, f"the agent to report the GET /pid requests of worker {pid_p} "
            "(in a loopwatch_named_callback_duration_seconds series with 'run_asgi' in its callback)",
            (agent, app), 0.2)
        before = WorkerView.of(before_metrics, pid_p)

        results = stall_worker(conns.by_pid[pid_p])
        assert results["block"]["pid"] == pid_p and results["block_s"] >= BLOCK_MS / 1000, results
        for conn in conns.by_pid[pid_other]:
            for path in ("/", "/pid", "/fanout?n=20"):
                get_json(conn, path)
    finally:
        conns.close()

    # (a)-(c): poll until the agent has drained the samples of the stall.
    metrics = before_metrics
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        metrics = scrape(agent_url) or metrics
        pids = metrics.label_values("loopwatch_callback_duration_seconds", "pid")
        if {str(pid_p), str(pid_other)} <= pids and all(
                stall_evidence(before, WorkerView.of(metrics, pid_p)).values()):
            break
        time.sleep(0.2)

    for pid in (pid_p, pid_other):
        assert WorkerView.of(metrics, pid).callbacks > 0, (
            f"(a) no loopwatch_callback_duration_seconds{{service={SERVICE!r},pid='{pid}'}} with samples; "
            f"pids seen: {sorted(metrics.label_values('loopwatch_callback_duration_seconds', 'pid'))}")
    after = WorkerView.of(metrics, pid_p)
    evidence = stall_evidence(before, after)
    assert all(evidence.values()), (
        f"(b)/(c) the stall on worker {pid_p} is not visible: {evidence}\n"
        f"before: {before}\nafter:  {after}\n{describe(metrics, pid_p)}\nrequests: {results}")

    # (g) I/O coverage: the request's bytes reach uvicorn's protocol through data_received, called by
    # libuv (uvloop) or inside the selector's read handle (asyncio); it is timed under its own name,
    # and busy time (loop time outside the poll) is exported for the worker.
    io_names = {h.labels.get("callback", "") for h in metrics.histograms(
        "loopwatch_named_callback_duration_seconds", service=SERVICE, pid=str(pid_p)) if h.count > 0}
    assert any(name.endswith("HttpToolsProtocol.data_received") for name in io_names), (
        f"(g) no HttpToolsProtocol.data_received series for pid {pid_p}: {sorted(io_names)}")
    busy = [s.value for s in metrics.samples("loopwatch_loop_busy_seconds_total", service=SERVICE, pid=str(pid_p))]
    assert busy and busy[0] >= BLOCK_MS / 1000, f"(g) busy seconds for pid {pid_p}: {busy}"

    # (d) /api/status lists a live ring for each worker.
    status = http_json(agent_url + "/api/status")
    rings = status["rings"]
    for pid in (pid_p, pid_other):
        mine = [r for r in rings if int(r["pid"]) == pid]
        assert mine and all(r["alive"] for r in mine), f"(d) no live ring for pid {pid} in {rings}"
        assert all(r["service"] == SERVICE for r in mine), mine

    # (f) promtool accepts the exposition.
    _, exposition = http_get(agent_url + "/metrics")
    lint = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True, text=True)
    assert lint.returncode == 0, f"(f) promtool check metrics failed:\n{lint.stdout}{lint.stderr}"

    # (e) a real Prometheus scrapes the agent.
    target = agent_url.removeprefix("http://")
    prometheus, prom_url = stack.start_prometheus(target)

    def query(q: str) -> list[dict]:
        reply = http_json(f"{prom_url}/api/v1/query?{urllib.parse.urlencode({'query': q})}")
        assert reply["status"] == "success", reply
        return reply["data"]["result"]

    def target_up() -> bool:
        return any(r["metric"].get("instance") == target and r["value"][1] == "1" for r in query("up"))

    wait_until(target_up, 20, f"Prometheus to report up == 1 for {target}", (prometheus, agent), 0.5)

    def callbacks_for_both_pids() -> set[str]:
        pids = {r["metric"].get("pid") for r in query(f'loopwatch_callbacks_total{{service="{SERVICE}"}}')}
        return pids if {str(pid_p), str(pid_other)} <= pids else set()

    wait_until(callbacks_for_both_pids, 10,
               f"loopwatch_callbacks_total for pids {pid_p} and {pid_other} in Prometheus",
               (prometheus, agent), 0.5)

    # The agent leaves cleanly on SIGTERM once the app is gone.
    app.stop()
    assert agent.stop() == 0, "loopwatch-agent did not exit with 0 on SIGTERM"
