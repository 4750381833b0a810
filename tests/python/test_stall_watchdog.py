"""Stall forensics, shim side (protocol v1.2, protocol/loopwatch/stall_report.h), on asyncio and on
uvloop: the in-flight slot, the pause bits of the control word, and the watchdog thread that answers
a capture request with the loop thread's kernel state and Python stack.

The tests play the agent from Python, through the ring file exactly as the agent sees it: they map
it, read the in-flight slot, store a capture request and FUTEX_WAKE it (ctypes), and read the report
region (seqlock, 64-byte ReportHeader, JSON text). Stalls last ~2 s; no timing is asserted tightly.
"""
from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import loopwatch
from conftest import LOOP_KINDS
from loopwatch import _shim

HERE = Path(__file__).resolve()

from agent_view import (  # noqa: F401  (the names the tests below use)
    COMPLETE, CONTROL, CONTROL_PAUSED, CONTROL_PAUSED_BY_APP, CONTROL_VALID, FAILED, STATE_ONLY,
    WATCHDOG_WAKEUPS, WRITE_POS, AgentView, Report,
)


def line_of(marker: str) -> int:
    """The line of this file that ends with `marker` (so the tests follow edits)."""
    for number, line in enumerate(HERE.read_text().splitlines(), start=1):
        if line.rstrip().endswith(marker) and "line_of(" not in line:
            return number
    raise AssertionError(marker)


# The callbacks whose stacks are captured. Module level: stable names and lines.
def spin_for(seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline: pass  # <- spin


def sleep_for(seconds):
    time.sleep(seconds)  # <- sleep


def warm(loop) -> None:
    """Runs one callback, so that the loop has its ring (and its watchdog thread)."""
    loop.run_until_complete(asyncio.sleep(0))
    assert _shim.loop_status(loop)["state"] == "recording"


def names_of(loop) -> dict[int, str]:
    return _shim.read_ring(_shim.loop_status(loop)["file"])["names"]


def watchdog_threads() -> int:
    """Threads of this process named like the watchdog (pthread_setname_np)."""
    count = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                count += f.read().strip() == "loopwatch-wd"
        except FileNotFoundError:
            pass
    return count


def capture_during(loop, callback, *args, after: float = 0.3):
    """Runs `callback(*args)` on the loop while an agent thread waits until it is in flight for
    `after` seconds, asks for a capture and waits for the complete (or failed) report."""
    warm(loop)
    view = AgentView.of(loop)
    out: dict = {}

    def agent():
        try:
            view.wait_inflight()
            time.sleep(after)
            out["inflight"] = view.inflight()
            out["request"] = view.request_capture()
            out["report"] = view.wait_report(out["request"], {COMPLETE, FAILED})
            out["still_running"] = view.inflight()[0] == out["inflight"][0]
        except BaseException as exc:  # surfaced by the test, not lost in the thread
            out["error"] = exc

    thread = threading.Thread(target=agent)
    thread.start()
    loop.call_soon(callback, *args)
    loop.run_until_complete(asyncio.sleep(0))
    thread.join(30)
    if "error" in out:
        raise out["error"]
    out["after"] = view.inflight()
    out["wakeups"] = view.u64(WATCHDOG_WAKEUPS)
    view.close()
    return out


# --- (a) the in-flight slot -------------------------------------------------------------------------

def blocking_in_flight(view, seen):
    seen["during"] = view.inflight()  # read by "the agent" while this callback runs
    time.sleep(0.02)


def test_inflight_slot_holds_the_running_callback_and_is_cleared_after(loop):
    warm(loop)
    view = AgentView.of(loop)
    assert view.inflight()[0] == 0  # idle between callbacks
    seen: dict = {}
    loop.call_soon(blocking_in_flight, view, seen)
    loop.run_until_complete(asyncio.sleep(0.01))

    start, name_id = seen["during"]
    assert start != 0
    assert names_of(loop)[name_id] == "test_stall_watchdog.blocking_in_flight"
    # The slot's start is the very start tick of the callback's sample.
    samples = [s for s in _shim.read_ring(view.path)["samples"] if s["name_id"] == name_id]
    assert len(samples) == 1
    assert abs(samples[0]["start"] - view.ticks_to_seconds(start)) < 1e-6
    assert view.inflight()[0] == 0  # cleared once it returned
    view.close()


def test_inflight_slot_is_seen_from_another_thread_during_a_blocking_callback(loop):
    warm(loop)
    view = AgentView.of(loop)
    seen: list[tuple[int, int]] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.append(view.inflight())
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    loop.call_soon(sleep_for, 0.3)
    loop.run_until_complete(asyncio.sleep(0.01))
    stop.set()
    watcher.join()
    busy = {name for start, name in seen if start != 0}
    assert {names_of(loop)[name] for name in busy} == {"test_stall_watchdog.sleep_for"}
    assert view.inflight()[0] == 0
    view.close()


# --- (b), (c) captures ------------------------------------------------------------------------------

def test_capture_of_a_spinning_callback_shows_the_spin_line_and_state_running(loop):
    out = capture_during(loop, spin_for, 2.0)
    report = out["report"]
    assert out["still_running"], "the capture must come while the callback still runs"
    assert report.stage == COMPLETE, report.text
    assert report.seq == 4  # two reports for the first request: thread state at once, then the stack
    assert (report.start, report.name_id) == out["inflight"]
    assert names_of(loop)[report.name_id] == "test_stall_watchdog.spin_for"
    body = report.json
    assert body["thread"]["state"] == "R", body
    assert isinstance(body["thread"]["wchan"], str)
    top = body["frames"][0]
    assert top == {"file": str(HERE), "line": line_of("# <- spin"), "function": "spin_for"}, body["frames"][:3]
    assert "error" not in body
    assert 0 < report.gil_wait_ns < 10e9
    assert abs(report.captured_unix_ns - time.time_ns()) < 60e9
    assert out["after"][0] == 0
    assert out["wakeups"] == 1


def test_capture_of_a_sleeping_callback_shows_the_sleep_call_and_state_sleeping(loop):
    out = capture_during(loop, sleep_for, 2.0)
    report = out["report"]
    assert out["still_running"]
    assert report.stage == COMPLETE, report.text
    assert (report.start, report.name_id) == out["inflight"]
    body = report.json
    assert body["thread"]["state"] == "S", body
    # time.sleep is C, so it has no frame: the innermost is the Python line that called it.
    assert body["frames"][0] == {"file": str(HERE), "line": line_of("# <- sleep"), "function": "sleep_for"}
    assert any(f["function"] == "capture_during" and f["file"] == str(HERE) for f in body["frames"])
    assert out["wakeups"] == 1


WEIRD_FILE = 'we"ird\\dir/\u00fcber\udcff\n.py'  # quote, backslash, non-ASCII, a lone surrogate, newline


def test_report_json_escapes_odd_file_names_and_stays_valid_utf8(loop):
    namespace: dict = {}
    exec(compile("import time\ndef odd_sleep():\n    time.sleep(1.5)\n", WEIRD_FILE, "exec"), namespace)
    out = capture_during(loop, namespace["odd_sleep"])
    report = out["report"]
    assert report.stage == COMPLETE, report.text
    top = report.json["frames"][0]  # parses: the text is strict UTF-8 and valid JSON
    # The lone surrogate cannot be UTF-8: it comes back as the escape sequence text "\udcff".
    assert top == {"file": WEIRD_FILE.replace("\udcff", "\\udcff"), "line": 3, "function": "odd_sleep"}


def test_deep_stacks_with_long_names_are_cut_to_fit_the_report_region(loop):
    long_file = "/" + "x" * 900 + ".py"
    namespace: dict = {}
    exec(compile("import time\ndef deep(n):\n    return deep(n - 1) if n else time.sleep(1.5)\n", long_file, "exec"), namespace)
    out = capture_during(loop, namespace["deep"], 150)
    report = out["report"]
    assert report.stage == COMPLETE
    body = report.json
    assert len(report.text) <= 16384 - 64
    assert body["truncated"] is True
    assert 5 <= len(body["frames"]) < 100
    assert all(f == {"file": long_file, "line": 3, "function": "deep"} for f in body["frames"])


# --- (d) a healthy loop never wakes the watchdog ---------------------------------------------------

def test_a_healthy_loop_running_100k_callbacks_never_wakes_the_watchdog(loop):
    remaining = [100_000]
    done = loop.create_future()

    def tick():
        remaining[0] -= 1
        if remaining[0]:
            loop.call_soon(tick)
        else:
            done.set_result(None)

    loop.call_soon(tick)
    loop.run_until_complete(done)
    status = _shim.loop_status(loop)
    assert status["watchdog"] == "running"
    assert status["samples_written"] + status["dropped"] >= 100_000
    assert status["watchdog_wakeups"] == 0
    view = AgentView.of(loop)
    assert view.u64(WATCHDOG_WAKEUPS) == 0
    assert [s for s in loopwatch.status()["loops"] if s["file"] == view.path][0]["watchdog_wakeups"] == 0
    # ... and it does count a request (so the zero above is not a counter that never moves).
    request = view.request_capture()
    assert view.wait_report(request, {COMPLETE, FAILED}).request == request
    assert view.u64(WATCHDOG_WAKEUPS) == 1 == _shim.loop_status(loop)["watchdog_wakeups"]
    view.close()


# --- (e) pause and resume ---------------------------------------------------------------------------

def run_callbacks(loop, n: int, callback=lambda: None) -> None:
    for _ in range(n):
        loop.call_soon(callback)
    loop.run_until_complete(asyncio.sleep(0))


def test_pause_and_resume_stop_and_restart_recording_on_every_loop(loop):
    warm(loop)
    view = AgentView.of(loop)
    run_callbacks(loop, 50)
    before = (view.u64(WRITE_POS), _shim.loop_status(loop)["samples_written"])
    inflight_while_paused = []
    try:
        loopwatch.pause()
        assert loopwatch.status()["paused"] is True
        assert _shim.loop_status(loop)["paused_by_app"] and not _shim.loop_status(loop)["paused_by_agent"]
        assert view.u32(CONTROL) & CONTROL_PAUSED_BY_APP
        ran = []
        run_callbacks(loop, 200, lambda: (ran.append(1), inflight_while_paused.append(view.inflight()[0])))
        assert len(ran) == 200  # the callbacks still run ...
        assert (view.u64(WRITE_POS), _shim.loop_status(loop)["samples_written"]) == before  # ... unrecorded
        assert set(inflight_while_paused) == {0}  # and without an in-flight slot
    finally:
        loopwatch.resume()
    assert loopwatch.status()["paused"] is False
    assert not view.u32(CONTROL) & CONTROL_PAUSED_BY_APP
    run_callbacks(loop, 200)
    assert view.u64(WRITE_POS) >= before[0] + 200
    assert _shim.loop_status(loop)["samples_written"] >= before[1] + 200
    view.close()


def pause_by_agent(view):
    view.set_control(set_bits=CONTROL_PAUSED)


def resume_by_agent(view):
    view.set_control(clear_bits=CONTROL_PAUSED)


def recorded_a(): pass
def not_recorded_b(): pass
def recorded_c(): pass


def test_the_agents_pause_bit_stops_recording_from_the_next_callback_and_clearing_it_resumes(loop):
    warm(loop)
    view = AgentView.of(loop)
    first = view.u64(WRITE_POS)
    status_while_paused = []
    for callback, args in [(recorded_a, ()), (pause_by_agent, (view,)), (not_recorded_b, ()), (not_recorded_b, ()),
                           (lambda: status_while_paused.append(_shim.loop_status(loop)), ()), (resume_by_agent, (view,)),
                           (recorded_c, ())]:
        loop.call_soon(callback, *args)
    loop.run_until_complete(asyncio.sleep(0))
    names = names_of(loop)
    ring = _shim.read_ring(view.path)
    assert ring["header"]["read_pos"] == 0  # no agent drains it: sample i is at position i
    recorded = [names[s["name_id"]] for s in ring["samples"]][first:]
    recorded = [name for name in recorded if name.startswith("test_stall_watchdog.")]  # not asyncio.sleep's
    # pause_by_agent was recorded (it started before the bit was set); resume_by_agent was not (it
    # started while the bit was set); nothing in between.
    assert recorded == ["test_stall_watchdog.recorded_a", "test_stall_watchdog.pause_by_agent",
                        "test_stall_watchdog.recorded_c"]
    assert status_while_paused[0]["paused_by_agent"] is True and status_while_paused[0]["paused_by_app"] is False
    assert _shim.loop_status(loop)["paused_by_agent"] is False
    view.close()


def test_rings_created_while_paused_start_paused(ring_dir, loop_kind):
    import uvloop

    try:
        loopwatch.pause()
        loop = uvloop.new_event_loop() if loop_kind == "uvloop" else asyncio.SelectorEventLoop()
        run_callbacks(loop, 20)
        view = AgentView.of(loop)
        assert view.u32(CONTROL) & CONTROL_PAUSED_BY_APP
        assert view.u64(WRITE_POS) == 0 and _shim.loop_status(loop)["samples_written"] == 0
    finally:
        loopwatch.resume()
    run_callbacks(loop, 20)
    assert view.u64(WRITE_POS) >= 20
    view.close()
    loop.close()


@pytest.mark.parametrize("attached", [False, True])
def test_closing_a_paused_ring_removes_it_only_if_no_agent_attached(ring_dir, loop_kind, attached):
    import uvloop

    loop = uvloop.new_event_loop() if loop_kind == "uvloop" else asyncio.SelectorEventLoop()
    warm(loop)
    view = AgentView.of(loop)
    path = view.path
    try:
        loopwatch.pause()  # sets an app bit in the control word: it must not read as "agent attached"
        view.set_control(set_bits=CONTROL_PAUSED | (CONTROL_VALID if attached else 0))
        loop.close()
        del loop
        gc.collect()  # the loop is gone: its ring closes
    finally:
        loopwatch.resume()
    view.close()
    assert os.path.exists(path) == attached
    if attached:
        os.unlink(path)  # we are the agent: we remove it


# --- (f) the watchdog thread's life -----------------------------------------------------------------

def test_closing_the_loop_stops_its_watchdog_thread(ring_dir, loop_kind):
    import uvloop

    gc.collect()  # earlier tests' loops: closed now, not during this test
    threads_before, watchdogs_before = len(os.listdir("/proc/self/task")), watchdog_threads()
    loop = uvloop.new_event_loop() if loop_kind == "uvloop" else asyncio.SelectorEventLoop()
    assert watchdog_threads() == watchdogs_before  # started with the ring, not with the loop
    warm(loop)
    assert _shim.loop_status(loop)["watchdog"] == "running"
    assert watchdog_threads() == watchdogs_before + 1
    assert len(os.listdir("/proc/self/task")) == threads_before + 1
    loop.close()
    del loop
    gc.collect()
    assert watchdog_threads() == watchdogs_before
    assert len(os.listdir("/proc/self/task")) == threads_before


# --- processes: fork, GIL held for long, interpreter exit --------------------------------------------

CHILD_PRELUDE = {
    "asyncio": "import asyncio; new_loop = asyncio.SelectorEventLoop\n",
    "uvloop": "import asyncio, uvloop; new_loop = uvloop.new_event_loop\n",
}


def child_env(ring_dir) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPWATCH")}
    env.update(LOOPWATCH="1", LOOPWATCH_DIR=str(ring_dir), PYTHONPATH=str(HERE.parent))
    return env


def popen_child(code: str, ring_dir) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=child_env(ring_dir), text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


HOLD_GIL = """
import sys, time
from loopwatch import _shim
loop = new_loop()
loop.run_until_complete(asyncio.sleep(0))
start = time.perf_counter(); sum(range(2_000_000)); per_item = (time.perf_counter() - start) / 2_000_000
n = int(2.0 / per_item)  # about 2 s of C code that never lets the GIL go
def hold_gil():
    sum(range(n))  # <- hold
print(_shim.loop_status(loop)["file"], flush=True)
sys.stdin.readline()
loop.call_soon(hold_gil)
loop.run_until_complete(asyncio.sleep(0))
print("done", flush=True)
sys.stdin.readline()
"""


def hold_gil_line(loop_kind: str) -> int:
    """The line of the child's code (prelude + HOLD_GIL) that holds the GIL."""
    first = 1 + CHILD_PRELUDE[loop_kind].count("\n")
    return next(i for i, line in enumerate(HOLD_GIL.splitlines(), first) if line.endswith("# <- hold"))


def exit_child(child: subprocess.Popen, view: AgentView) -> None:
    """Tells a HOLD_GIL child to exit, checks that it exited cleanly and removes its ring."""
    child.stdin.write("exit\n")
    child.stdin.flush()
    assert child.wait(30) == 0, child.stderr.read()
    view.close()
    os.unlink(view.path)


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_thread_state_is_reported_at_once_while_the_loop_thread_holds_the_gil(tmp_path, loop_kind):
    child = popen_child(CHILD_PRELUDE[loop_kind] + HOLD_GIL, tmp_path)
    try:
        view = AgentView(child.stdout.readline().strip())
        view.set_control(set_bits=CONTROL_VALID)  # attached: the child leaves the file to us
        child.stdin.write("go\n")
        child.stdin.flush()
        deadline = time.monotonic() + 10
        while view.inflight()[0] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        inflight = view.inflight()
        request = view.request_capture()
        first = view.wait_report(request, {STATE_ONLY, COMPLETE, FAILED}, timeout=5, poll=0.001)
        # Written while the callback still holds the GIL: the kernel's view needs no GIL.
        assert view.inflight() == inflight, "the callback ended before the thread state came"
        assert first.stage == STATE_ONLY
        assert (first.start, first.name_id) == inflight
        assert first.json == {"thread": {"state": "R", "wchan": first.json["thread"]["wchan"]}}
        final = view.wait_report(request, {COMPLETE, FAILED}, timeout=30)
        assert final.stage == COMPLETE, final.text
        assert final.gil_wait_ns > 0.2e9  # it waited for the GIL until the C call returned
        # The loop thread let the GIL go right after sum() returned, still on that line.
        assert final.json["frames"][0] == {"file": "<string>", "line": hold_gil_line(loop_kind), "function": "hold_gil"}
        assert child.stdout.readline().strip() == "done"
        exit_child(child, view)
    finally:
        child.kill()
        child.wait()


# The loop thread keeps the GIL from before the capture request until the close (or the exit): deque
# consumes the chain in C, so the thread never reaches a point where it could let the GIL go. The
# test plays the agent from outside and asks once the child says it holds the GIL.
HOLD_UNTIL = """
import atexit, collections, itertools, sys, time
from loopwatch import _shim
loop = new_loop()
loop.run_until_complete(asyncio.sleep(0))
start = time.perf_counter(); sum(range(2_000_000)); per_item = (time.perf_counter() - start) / 2_000_000
hold = range(int(1.5 / per_item))  # about 1.5 s of C code that keeps the GIL
def announce():
    print("holding", flush=True)
print(_shim.loop_status(loop)["file"], flush=True)
"""

CLOSE_WHILE_WAITING = """
def close_while_the_watchdog_waits():
    collections.deque(itertools.chain(iter(announce, None), hold, iter(_shim.close_all, None)), maxlen=0)  # <- close
loop.call_soon(close_while_the_watchdog_waits)
loop.run_until_complete(asyncio.sleep(0))
"""

EXIT_WHILE_WAITING = """
atexit._clear()  # not even loopwatch's shutdown: the watchdog thread lives on into finalization
atexit.register(collections.deque, itertools.chain(iter(announce, None), hold), 0)  # C, called from C
"""


def capture_while_the_child_holds_the_gil(code: str, ring_dir) -> tuple[subprocess.CompletedProcess, Report]:
    child = popen_child(code, ring_dir)
    try:
        view = AgentView(child.stdout.readline().strip())
        view.set_control(set_bits=CONTROL_VALID)  # attached: the child leaves the file to us
        assert child.stdout.readline().strip() == "holding"
        time.sleep(0.2)  # well inside the 1.5 s of C code
        request = view.request_capture()
        view.wait_report(request, {STATE_ONLY, COMPLETE, FAILED}, timeout=1.0, poll=0.001)  # at once
        stdout, stderr = child.communicate(timeout=30)  # a close that kept the GIL would hang here
        report = view.report()
        assert report is not None and report.request == request
        view.close()
        os.unlink(view.path)
        return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr), report
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_closing_a_ring_while_its_watchdog_waits_for_the_gil_lets_it_finish(tmp_path, loop_kind):
    code = CHILD_PRELUDE[loop_kind] + HOLD_UNTIL + CLOSE_WHILE_WAITING
    result, report = capture_while_the_child_holds_the_gil(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    # Close released the GIL while it waited for the thread, so the capture finished, with the stack
    # of the closing callback.
    assert report.stage == COMPLETE, report
    close_line = next(i for i, line in enumerate(code.splitlines(), 1) if line.endswith("# <- close"))
    assert report.json["frames"][0] == {"file": "<string>", "line": close_line,
                                        "function": "close_while_the_watchdog_waits"}
    assert report.gil_wait_ns > 0.3e9


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_interpreter_exit_with_a_watchdog_waiting_for_the_gil_neither_crashes_nor_hangs(tmp_path, loop_kind):
    code = CHILD_PRELUDE[loop_kind] + HOLD_UNTIL + EXIT_WHILE_WAITING
    result, report = capture_while_the_child_holds_the_gil(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    # The thread state came before the GIL was asked for; whether the watchdog then got the GIL
    # before finalization (complete), saw the interpreter finalizing (failed) or was ended with the
    # process (thread state only) depends on where the exiting interpreter next let the GIL go.
    assert report.json["thread"]["state"] == "R"


FORK = """
import json, os, threading
from loopwatch import _shim
def watchdogs():
    names = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/comm") as f:
            names.append(f.read().strip())
    return names.count("loopwatch-wd")
loop = new_loop()
loop.run_until_complete(asyncio.sleep(0))
parent = {"watchdogs": watchdogs(), "file": _shim.loop_status(loop)["file"]}
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    child = {"watchdogs_after_fork": watchdogs(), "parent_loop_watchdog": _shim.loop_status(loop)["watchdog"]}
    child_loop = new_loop()
    child_loop.run_until_complete(asyncio.sleep(0))
    child["watchdogs_with_own_loop"] = watchdogs()
    child["own_watchdog"] = _shim.loop_status(child_loop)["watchdog"]
    child["file"] = _shim.loop_status(child_loop)["file"]
    os.write(w, json.dumps(child).encode())
    os.close(w)
    sys.exit(0)  # a normal exit: atexit joins the child's own watchdog, never the parent's
os.close(w)
child = json.loads(os.read(r, 65536))
_, status = os.waitpid(pid, 0)
parent["child_exit"] = os.waitstatus_to_exitcode(status)
loop.run_until_complete(asyncio.sleep(0))  # from 3.13 on the watchdog starts again with a callback
parent["watchdogs_after"] = watchdogs()
print(json.dumps({"parent": parent, "child": child}))
"""


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_fork_child_has_no_watchdog_of_the_parents_starts_its_own_and_exits_cleanly(tmp_path, loop_kind):
    code = CHILD_PRELUDE[loop_kind] + "import sys\n" + FORK
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=child_env(tmp_path),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    parent, child = out["parent"], out["child"]
    assert parent["watchdogs"] == 1 and parent["watchdogs_after"] == 1
    assert child["watchdogs_after_fork"] == 0  # threads are not copied by fork
    assert child["parent_loop_watchdog"] == "off"  # and the child forgot the parent's
    assert child["watchdogs_with_own_loop"] == 1 and child["own_watchdog"] == "running"
    assert child["file"] != parent["file"]
    assert parent["child_exit"] == 0


def test_the_parents_watchdog_still_answers_after_a_fork(loop):
    warm(loop)
    view = AgentView.of(loop)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    warm(loop)  # from 3.13 on the watchdog stopped for the fork starts again with the next callback
    request = view.request_capture()
    report = view.wait_report(request, {COMPLETE, FAILED})
    assert report.stage == COMPLETE, report.text
    assert report.start == 0  # no callback was running: the loop was idle
    assert any(f["file"] == str(HERE) for f in report.json["frames"])
    view.close()


FORK_THREADS = """
import json, os, warnings
from loopwatch import _shim
def threads():
    return len(os.listdir("/proc/self/task"))
loop = new_loop()
loop.run_until_complete(asyncio.sleep(0))
out = {"before": threads(), "status_before": _shim.loop_status(loop)["watchdog"]}
# Registered after loopwatch's hooks, so it runs after its after_in_parent hook: what CPython 3.13
# sees when it counts threads for its fork() warning.
os.register_at_fork(after_in_parent=lambda: out.setdefault("in_after_fork_hooks", threads()))
async def fork_inside_a_callback():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pid = os.fork()
        if pid == 0:
            os._exit(0)
    out["warnings"] = [str(w.message) for w in caught]
    os.waitpid(pid, 0)
    await asyncio.sleep(0)  # the loop's next callback: the watchdog is back by now on every version
    out["after"] = threads()
    out["status_after"] = _shim.loop_status(loop)["watchdog"]
loop.run_until_complete(fork_inside_a_callback())
print(json.dumps(out))
"""


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_a_process_forks_with_only_its_own_threads_and_gets_its_watchdog_back(tmp_path, loop_kind):
    code = CHILD_PRELUDE[loop_kind] + FORK_THREADS
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=child_env(tmp_path),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["status_before"] == "running" and out["before"] == 2  # main thread + watchdog
    # The watchdog is stopped for the fork, so 3.12+ has no "multi-threaded, use of fork()" warning
    # (3.12 counts before the after-fork hooks, where it starts again; 3.13 after them, so it starts
    # again only with the loop's next callback) ...
    assert out["warnings"] == []
    if sys.version_info >= (3, 13):
        assert out["in_after_fork_hooks"] == 1
    # ... and runs again after it.
    assert out["after"] == 2 and out["status_after"] == "running"
