"""End to end, stall forensics (issue 6), on asyncio and on uvloop: loopwatch-agent + one uvicorn
worker of examples/demo_app.py with LOOPWATCH=1.

- A loop stuck *now* is visible while it is stuck: during a 5 s `/spin` (a pure-Python busy loop in
  an `async def` endpoint) and a 5 s `/block` (time.sleep in one), the agent's /metrics shows
  loopwatch_callback_inflight_seconds >= 2 for the worker's pid, labelled with the running callback
  (uvicorn's request Task step, "run_asgi"), and /api/stalls holds a report whose stack contains
  demo_app.py and the line of the spinning / sleeping statement, and whose thread state tells the two
  apart ("running" vs "sleeping").
- A healthy loop under load never wakes the shim's watchdog thread: loopwatch_watchdog_wakeups_total
  stays put (and loopwatch_stalls_total 0) through a burst of requests after the worker's first
  ones; the stall then wakes it once (armed at 50 ms; the stack comes from a sample, no second wake).
- The control endpoint (--web.enable-control) pauses a running worker's shim (its callback count
  stops while requests keep being served) and resumes it.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from e2e_processes import REPO, http_get, http_json, wait_until
from promtext import parse

SERVICE = "e2e-stall"
STALL_MS = 5000
DEMO_APP = REPO / "examples" / "demo_app.py"


def line_of(statement: str) -> int:
    """The line number of `statement` in demo_app.py (so the test follows edits of the app)."""
    for number, line in enumerate(DEMO_APP.read_text().splitlines(), start=1):
        if line.strip().startswith(statement):
            return number
    raise AssertionError(f"{statement!r} not found in {DEMO_APP}")


def start(stack, ring_dir: Path, loop: str, *agent_flags: str) -> tuple[str, str, int]:
    _, agent_url = stack.start_agent(ring_dir, *agent_flags)
    env = dict(os.environ, LOOPWATCH="1", LOOPWATCH_DIR=str(ring_dir), LOOPWATCH_SERVICE=SERVICE)
    _, app_url = stack.start_uvicorn("examples.demo_app:app", env, "--workers", "1", "--loop", loop,
                                     "--no-access-log")
    pid = http_json(app_url + "/pid")["pid"]
    wait_until(lambda: metric(agent_url, "loopwatch_callbacks_total", pid) is not None, 15,
               f"the agent to map worker {pid}'s ring")
    return agent_url, app_url, pid


def metrics(agent_url: str):
    status, body = http_get(agent_url + "/metrics")
    assert status == 200, body
    return parse(body)


def metric(agent_url: str, name: str, pid: int) -> float | None:
    samples = metrics(agent_url).samples(name, pid=str(pid))
    return samples[0].value if samples else None


def get_in_background(url: str) -> tuple[threading.Thread, list]:
    result: list = []

    def run():
        result.append(http_get(url, timeout=60))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def burst(app_url: str, requests: int) -> None:
    parsed = urllib.parse.urlsplit(app_url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    for i in range(requests):
        conn.request("GET", "/fanout?n=50" if i % 2 else "/")
        response = conn.getresponse()
        response.read()
        assert response.status == 200
    conn.close()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("endpoint, statements, state", [
    # The stack is taken whenever the spinning thread lets the GIL go: on either line of its loop.
    ("spin", ("while time.perf_counter() < deadline:", "iterations += 1"), "running"),
    ("block", ("time.sleep(ms / 1000)",), "sleeping"),
])
def test_a_stalled_worker_is_seen_while_it_is_stalled_with_its_stack(stack, ring_dir, loop, endpoint, statements, state):
    agent_url, app_url, pid = start(stack, ring_dir, loop)
    # The watchdog wakes for every callback past the arm threshold (50 ms): a worker's first requests
    # (FastAPI building its models) may take that long on a busy machine, so they come first.
    burst(app_url, 20)
    time.sleep(0.3)
    woken = metric(agent_url, "loopwatch_watchdog_wakeups_total", pid)
    burst(app_url, 300)  # a healthy loop under load: the watchdog must not wake
    time.sleep(0.3)
    assert metric(agent_url, "loopwatch_watchdog_wakeups_total", pid) == woken, \
        metrics(agent_url).samples("loopwatch_blocked_seconds_total", pid=str(pid))
    assert metric(agent_url, "loopwatch_stalls_total", pid) == 0
    assert metric(agent_url, "loopwatch_callbacks_total", pid) > 300

    request, reply = get_in_background(f"{app_url}/{endpoint}?ms={STALL_MS}")
    # During the stall: the in-flight age passes 2 s, with the running callback's name.
    def inflight():
        samples = [s for s in metrics(agent_url).samples("loopwatch_callback_inflight_seconds", pid=str(pid))
                   if s.value >= 2.0]
        return samples[0] if samples else None
    stalled = wait_until(inflight, 4.5, "an in-flight age >= 2 s on /metrics")
    assert "run_asgi" in stalled.labels["callback"], stalled.labels
    assert request.is_alive(), "the stall must still be going on when the age is read"

    # The stall report: the stack holds the statement the loop is stuck on; the state tells spinning
    # from sleeping.
    def report():
        events = [e for e in http_json(agent_url + "/api/stalls")["events"] if e["pid"] == pid]
        return events[0] if events and events[0]["report"].get("stage") == "complete" else None
    event = wait_until(report, 10, "a complete stall report on /api/stalls")
    frames = event["report"]["stack"]
    lines = {line_of(statement) for statement in statements}
    app_frames = [f for f in frames if f["file"].endswith("examples/demo_app.py")]
    assert app_frames and app_frames[0]["line"] in lines, json.dumps(event, indent=1)
    assert frames[0] == app_frames[0], frames[:3]  # innermost: the endpoint (time.sleep is C, no frame)
    assert event["report"]["state"] == state, event["report"]
    assert "run_asgi" in event["callback"]
    assert metric(agent_url, "loopwatch_stalls_total", pid) == 1
    assert metric(agent_url, "loopwatch_watchdog_wakeups_total", pid) == woken + 1  # armed once, no second wake

    request.join(30)
    assert reply and reply[0][0] == 200, reply
    wait_until(lambda: metric(agent_url, "loopwatch_callback_inflight_seconds", pid) is not None and
               all(s.value < 1 for s in metrics(agent_url).samples("loopwatch_callback_inflight_seconds", pid=str(pid))),
               5, "the in-flight age to fall back after the stall")
    finished = [e for e in http_json(agent_url + "/api/stalls")["events"] if e["pid"] == pid][0]
    assert finished["finished"] is True
    assert finished["running_seconds"] >= 4.0


def post(url: str) -> tuple[int, dict]:
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    conn.request("POST", parsed.path + "?" + parsed.query)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, json.loads(body)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_control_endpoint_pauses_and_resumes_a_running_worker(stack, ring_dir, loop):
    agent_url, app_url, pid = start(stack, ring_dir, loop, "--web.enable-control")
    burst(app_url, 50)
    status, body = post(f"{agent_url}/api/control?action=pause&pid={pid}")
    assert status == 200, body
    time.sleep(0.3)  # samples written before the pause are drained
    paused_at = metric(agent_url, "loopwatch_callbacks_total", pid)
    burst(app_url, 200)
    time.sleep(0.3)
    assert metric(agent_url, "loopwatch_callbacks_total", pid) == paused_at, "sampling did not stop"
    assert http_json(agent_url + "/api/status")["rings"][0]["paused"] is True
    status, body = post(f"{agent_url}/api/control?action=resume&pid={pid}")
    assert status == 200, body
    burst(app_url, 200)
    wait_until(lambda: metric(agent_url, "loopwatch_callbacks_total", pid) > paused_at + 200, 5,
               "sampling to resume")
