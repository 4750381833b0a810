"""Sampling of slow callbacks, shim side (protocol v1.3, protocol/loopwatch/attribution.h), on asyncio
and uvloop: an arm request makes the watchdog sample the loop thread until the callback ends, charge
the time to (endpoint, handler, site, state) slots of the attribution table and publish the current
attribution; the first sample past stall_after_us writes the stall report. The tests play the agent
(agent_view.py); the agent's own arming (after the arm threshold, never before) is tested in
tests/cpp/stall_watch_test.cpp and end to end in tests/e2e/test_attribution.py.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import sysconfig
import threading
import time

import pytest

import sampling_helpers
from agent_view import COMPLETE, FAILED, WATCHDOG_WAKEUPS, AgentView
from loopwatch import _shim

ARM_AFTER = 0.05  # the age at which the tests' "agent" arms, as --slow.arm-threshold does


def warm(loop) -> AgentView:
    loop.run_until_complete(asyncio.sleep(0))
    return AgentView.of(loop)


def names_of(view) -> dict[int, str]:
    return _shim.read_ring(view.path)["names"]


def soon(loop, callback, *args):
    """A start for run_armed: `callback(*args)` as one loop callback."""
    def start():
        loop.call_soon(callback, *args)
        loop.run_until_complete(asyncio.sleep(0))
    return start


def run_armed(loop, view, start_callback, *, interval_us=10_000, limit=1000, stall_after_us=0):
    """Starts the callback with `start_callback()`; an agent thread arms it once it has been in flight
    for ARM_AFTER seconds. Returns what the agent saw."""
    out: dict = {}

    def agent():
        try:
            out["start"] = view.wait_inflight()[0]
            time.sleep(ARM_AFTER)
            out["request"] = view.arm(out["start"], interval_us, limit, stall_after_us)
            out["armed_at"] = time.monotonic_ns()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=agent)
    thread.start()
    start_callback()
    thread.join(30)
    if "error" in out:
        raise out["error"]
    deadline = time.monotonic() + 5
    while (view.attribution() or {}).get("start") != out["start"] and time.monotonic() < deadline:
        time.sleep(0.005)
    return out


def slots_named(view):
    names = names_of(view)
    return [{**slot, "endpoint": names.get(slot["endpoint"], ""), "handler": names.get(slot["handler"], ""),
             "site": names.get(slot["site"], "")} for slot in view.table()]


def site_of(function: str, marker: str) -> str:
    return (f"sampling_helpers.{function} (sampling_helpers.py:{sampling_helpers.line_of(marker)})")


def test_a_sleeping_callback_is_charged_to_its_line_as_sleeping(loop):
    view = warm(loop)
    wakeups = view.u64(WATCHDOG_WAKEUPS)

    out = run_armed(loop, view, soon(loop, sampling_helpers.block_in_sleep, 0.3))
    slots = slots_named(view)
    # One line; a sample taken just as time.sleep returned (a busy machine) may say R, not S.
    assert {s["site"] for s in slots} == {site_of("block_in_sleep", "# <- sleep site")}, slots
    total = sum(s["blocked_ns"] for s in slots)
    assert sum(s["blocked_ns"] for s in slots if s["state"] == "S") >= 0.9 * total, slots
    # The whole callback up to the last sample: 0.3 s minus at most one interval and the slack.
    assert 0.2 <= total * 1e-9 <= 0.35, slots
    samples = sum(s["samples"] for s in slots)
    assert 10 <= samples <= 30, slots
    current = view.attribution()
    assert current["start"] == out["start"] and current["samples"] == samples
    assert names_of(view)[current["site"]] == slots[0]["site"]
    # The first sample follows the arm within a few intervals (reported in the note).
    assert current["first_sample_mono_ns"] >= out["armed_at"] - 5_000_000
    assert view.u64(WATCHDOG_WAKEUPS) == wakeups + 1  # one wake-up per armed callback
    view.close()


def test_a_spinning_callback_is_charged_as_running(loop):
    view = warm(loop)

    run_armed(loop, view, soon(loop, sampling_helpers.block_in_spin, 0.3))
    slots = slots_named(view)
    assert {s["site"] for s in slots} == {site_of("block_in_spin", "# <- spin site")}, slots
    running = sum(s["blocked_ns"] for s in slots if s["state"] == "R")
    assert running >= 0.8 * sum(s["blocked_ns"] for s in slots) > 0, slots
    view.close()


def test_the_sample_limit_bounds_the_samples_per_callback(loop):
    view = warm(loop)

    run_armed(loop, view, soon(loop, sampling_helpers.block_in_sleep, 0.3), limit=3)
    assert sum(s["samples"] for s in view.table()) == 3
    assert view.attribution()["samples"] == 3
    view.close()


class FakeRoute:
    """What Starlette's and FastAPI's routers leave in scope["route"]: the path template."""

    def __init__(self, path):
        self.path = path
        self.path_format = path


async def get_order(request):  # the route's endpoint, as a router stores it in scope["endpoint"]
    sampling_helpers.block_in_sleep(0.3)


async def asgi_app(scope, receive, send):
    await scope["endpoint"](None)


def test_an_asgi_request_is_named_by_route_template_and_handler(loop):
    view = warm(loop)
    scope = {"type": "http", "method": "GET", "path": "/orders/17", "route": FakeRoute("/orders/{order_id}"),
             "endpoint": get_order}

    def start():
        loop.run_until_complete(asgi_app(scope, None, None))

    run_armed(loop, view, start)
    slots = slots_named(view)
    assert {(s["endpoint"], s["handler"], s["site"]) for s in slots} == {
        ("GET /orders/{order_id}", f"{__name__}.get_order", site_of("block_in_sleep", "# <- sleep site"))}, slots
    assert "/orders/17" not in str(names_of(view))  # never the raw path
    view.close()


def test_without_a_route_the_handler_is_the_outermost_frame_of_the_users_code(loop):
    view = warm(loop)

    async def handle_plain():
        sampling_helpers.block_in_sleep(0.3)

    def start():
        loop.run_until_complete(handle_plain())

    run_armed(loop, view, start)
    slots = slots_named(view)
    assert {(s["endpoint"], s["handler"]) for s in slots} == {
        ("", f"{__name__}.test_without_a_route_the_handler_is_the_outermost_frame_of_the_users_code")}, slots
    view.close()


def test_the_stall_report_comes_from_the_first_sample_past_stall_after(loop):
    view = warm(loop)

    out = run_armed(loop, view, soon(loop, sampling_helpers.block_in_sleep, 0.4), stall_after_us=200_000)
    report = view.wait_report(out["request"], {COMPLETE, FAILED}, timeout=5)
    assert report.stage == COMPLETE and report.start == out["start"]
    frames = report.json["frames"]
    assert frames[0]["line"] == sampling_helpers.line_of("# <- sleep site"), frames[0]
    assert report.json["thread"]["state"] == "S"
    view.close()


def test_a_callback_that_ends_before_the_arm_is_not_sampled(loop):
    view = warm(loop)
    loop.call_soon(sampling_helpers.block_in_sleep, 0.01)
    loop.run_until_complete(asyncio.sleep(0.02))
    wakeups = view.u64(WATCHDOG_WAKEUPS)
    view.arm(12345)  # a start that is not in flight: an arm that came too late
    time.sleep(0.1)
    assert view.table() == [] and view.attribution() is None
    assert view.u64(WATCHDOG_WAKEUPS) == wakeups + 1
    view.close()


# --- the rule for "the user's code" -------------------------------------------------------------------

def test_standard_library_frameworks_and_loopwatch_are_not_the_users_code():
    import loopwatch
    import _pytest

    stdlib = sysconfig.get_paths()["stdlib"]
    assert not _shim.is_user_file(os.path.join(stdlib, "asyncio", "events.py"))
    assert not _shim.is_user_file("<frozen importlib._bootstrap>")
    assert not _shim.is_user_file("<string>")  # a multiprocessing worker's `python -c` line
    assert not _shim.is_user_file(loopwatch.__file__)
    assert not _shim.is_user_file(_pytest.__file__)  # a test runner counts as a framework
    assert _shim.is_user_file(sampling_helpers.__file__)
    assert _shim.is_user_file("/srv/app/orders/views.py")


def test_status_says_whose_code_counts():
    import loopwatch

    attribution = loopwatch.status()["attribution"]
    assert "uvicorn" in attribution["skipped_packages"] and "fastapi" in attribution["skipped_packages"]
    assert attribution["user_packages"] == "every installed package but the skipped ones"


RULES_CHILD = r"""
import json, os, sys
from loopwatch import _attribution, _shim
_attribution.install()
site = _attribution.site_dirs()[0]
print(json.dumps({name: _shim.is_user_file(os.path.join(site, name, "x.py"))
                  for name in ("uvicorn", "requests", "mycompany", "extra")}))
"""


@pytest.mark.parametrize("environment, expected", [
    ({}, {"uvicorn": False, "requests": True, "mycompany": True, "extra": True}),
    ({"LOOPWATCH_USER_PACKAGES": "mycompany"}, {"uvicorn": False, "requests": False, "mycompany": True, "extra": False}),
    ({"LOOPWATCH_SKIP_PACKAGES": "extra"}, {"uvicorn": False, "requests": True, "mycompany": True, "extra": False}),
])
def test_which_installed_packages_count_as_the_users_is_configurable(environment, expected):
    import json

    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPWATCH")} | environment
    result = subprocess.run([sys.executable, "-c", RULES_CHILD], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected


# --- a loop thread that holds the GIL in C ------------------------------------------------------------

@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_callback_holding_the_gil_in_c_gets_its_thread_state_at_once_and_its_time_charged(tmp_path, loop_kind):
    from conftest import LOOP_KINDS
    from test_stall_watchdog import CHILD_PRELUDE, HOLD_GIL, exit_child, hold_gil_line, popen_child
    from agent_view import CONTROL_VALID, STATE_ONLY

    if loop_kind not in LOOP_KINDS:
        pytest.skip(f"{loop_kind} is not installed")
    child = popen_child(CHILD_PRELUDE[loop_kind] + HOLD_GIL, tmp_path)
    try:
        view = AgentView(child.stdout.readline().strip())
        view.set_control(set_bits=CONTROL_VALID)
        child.stdin.write("go\n")
        child.stdin.flush()
        start = view.wait_inflight()[0]
        time.sleep(ARM_AFTER)
        request = view.arm(start, stall_after_us=0)  # sample it, and report the stall at once
        first = view.wait_report(request, {STATE_ONLY, COMPLETE, FAILED}, timeout=5, poll=0.001)
        assert view.inflight()[0] == start, "the callback ended before the thread state came"
        assert first.stage == STATE_ONLY and first.json["thread"]["state"] == "R"  # no GIL needed
        assert child.stdout.readline().strip() == "done"
        # The first sample waited for the GIL until sum() returned; the loop thread let it go on the
        # same line, so the whole wait is charged there, as running.
        hold_line = hold_gil_line(loop_kind)
        names = _shim.read_ring(view.path)["names"]
        slots = [{**s, "site": names.get(s["site"], "")} for s in view.table()]
        held = sum(s["blocked_ns"] for s in slots if s["site"].endswith(f"(<string>:{hold_line})") or
                   s["site"] == "(native code holding the GIL)")
        # (The C call takes "about 2 s", calibrated by the child on a machine that may be busy.)
        assert held == sum(s["blocked_ns"] for s in slots) >= 0.5e9, slots
        assert all(s["state"] == "R" for s in slots), slots
        exit_child(child, view)
    finally:
        child.kill()
        child.wait()
