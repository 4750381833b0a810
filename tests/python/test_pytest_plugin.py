"""The pytest plugin (loopwatch/pytest_plugin.py, `pytest --loopwatch-max-callback=50ms`) and the shim's
in-process callback limit under it (src/callback_limit.*).

Plugin tests run an inner pytest in a fresh interpreter of this venv (pytester.runpytest_subprocess):
the plugin installs the shim at configure time, which must happen in a process of its own, and the
plugin must be found through its pytest11 entry point exactly as a user's pytest finds it. The
in-process tests drive _shim.set_callback_limit/take_over_limit on the session's instrumented loops
(conftest `loop`, asyncio and uvloop) and show that the check changes nothing else.
"""
from __future__ import annotations

import asyncio
import math
import re
import time

import pytest

from conftest import LOOP_KINDS, recorded
from loopwatch import _shim
from loopwatch.pytest_plugin import format_seconds, parse_duration

pytest_plugins = ["pytester"]

# Shared by the inner test files: a loop of the requested kind that runs a coroutine to completion.
INNER_HELPERS = """
import asyncio, time
import pytest
import uvloop

def run(kind, coro):
    loop = uvloop.new_event_loop() if kind == "uvloop" else asyncio.SelectorEventLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()

async def slow():
    time.sleep(0.1)  # blocks the loop for 100 ms inside one Task step

async def fast():
    await asyncio.sleep(0)
"""


@pytest.fixture
def inner(pytester, monkeypatch):
    """A pytester whose subprocesses start without LOOPWATCH (the plugin must install the shim itself)."""
    for name in ("LOOPWATCH", "LOOPWATCH_DIR", "LOOPWATCH_SERVICE", "PYTEST_ADDOPTS", "PYTEST_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setenv("COLUMNS", "400")  # the short summary cuts messages at the terminal's width
    pytester.makepyfile(inner_helpers=INNER_HELPERS)
    return pytester


def run_inner(pytester, *args: str):
    # -p no:cacheprovider: the repository's test command runs without it; -rA: reasons in the summary.
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", *args, timeout=120)


def durations_ms(text: str) -> list[float]:
    return [float(ms) for ms in re.findall(r"took ([0-9.]+) ms", text)]


# --- plugin, in a subprocess -------------------------------------------------------------------


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_blocking_callback_fails_the_test_naming_it(inner, kind):
    inner.makepyfile(
        test_inner=f"""
        from inner_helpers import run, slow, fast

        def test_blocks():
            run({kind!r}, slow())

        def test_does_not_block():
            run({kind!r}, fast())
        """
    )
    result = run_inner(inner, "--loopwatch-max-callback=50ms")
    out = result.stdout.str()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- loopwatch -*",  # the plugin's summary, then pytest's short summary
            "loopwatch: 1 test failed: a loop callback ran longer than 50 ms",
            "FAILED test_inner.py::test_blocks - loopwatch: 1 loop callback ran longer than 50 ms: "
            f"Task.__step of slow() at inner_helpers.py:* took * ms ({kind})",
        ]
    )
    assert "test_does_not_block" not in [line for line in out.splitlines() if line.startswith("FAILED")]
    (took,) = durations_ms(out.split("short test summary info")[1])
    assert 100 <= took < 5000


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_loops_of_asyncio_run_and_the_anyio_plugin_are_checked(inner, kind):
    inner.makepyfile(
        test_inner=f"""
        import asyncio, time
        import pytest
        import uvloop
        from inner_helpers import slow

        def test_asyncio_run():
            if {kind!r} == "uvloop":
                uvloop.install()
            try:
                asyncio.run(slow())
            finally:
                asyncio.set_event_loop_policy(None)

        @pytest.fixture
        def anyio_backend():
            return ("asyncio", {{"use_uvloop": {kind == "uvloop"}}})

        @pytest.mark.anyio
        async def test_anyio():
            assert type(asyncio.get_running_loop()).__module__.startswith({kind!r})
            time.sleep(0.1)
        """
    )
    result = run_inner(inner, "--loopwatch-max-callback=50ms")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines_random(
        [
            f"FAILED test_inner.py::test_asyncio_run - loopwatch: 1 loop callback ran longer than 50 ms: Task.__step of slow() * ({kind})",
            f"FAILED test_inner.py::test_anyio* - loopwatch: 1 loop callback ran longer than 50 ms: * ({kind})",
            "loopwatch: 2 tests failed: a loop callback ran longer than 50 ms",
        ]
    )


def test_a_test_without_slow_callbacks_passes_and_the_summary_says_so(inner):
    inner.makepyfile(
        test_inner="""
        import pytest
        from inner_helpers import run, fast

        @pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
        def test_fast(kind):
            for _ in range(50):
                run(kind, fast())
        """
    )
    result = run_inner(inner, "--loopwatch-max-callback=50ms")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["loopwatch: no test ran a loop callback longer than 50 ms"])
    assert result.ret == 0


def test_marker_opts_out_or_overrides_the_limit(inner):
    inner.makepyfile(
        test_inner="""
        import pytest
        from inner_helpers import run, slow

        @pytest.mark.loopwatch_max_callback(None)
        def test_opted_out():
            run("uvloop", slow())

        @pytest.mark.loopwatch_max_callback("500ms")
        def test_higher_limit():
            run("asyncio", slow())

        @pytest.mark.loopwatch_max_callback(0.5)
        def test_higher_limit_in_seconds():
            run("uvloop", slow())

        @pytest.mark.loopwatch_max_callback("20ms")
        def test_lower_limit():
            run("asyncio", slow())

        @pytest.mark.loopwatch_max_callback("soon")
        def test_bad_marker():
            pass
        """
    )
    # --strict-markers: the plugin registers its marker.
    result = run_inner(inner, "--strict-markers", "--loopwatch-max-callback=50ms")
    result.assert_outcomes(passed=3, failed=1, errors=1)
    result.stdout.fnmatch_lines_random(
        [
            "FAILED test_inner.py::test_lower_limit - loopwatch: 1 loop callback ran longer than 20 ms: Task.__step of slow() *",
            "ERROR test_inner.py::test_bad_marker - loopwatch: @pytest.mark.loopwatch_max_callback: 'soon' is not a duration*",
            "loopwatch: 1 test failed: a loop callback ran longer than 50 ms",
        ]
    )


def test_setup_and_teardown_are_reported_in_their_own_phase(inner):
    inner.makepyfile(
        test_inner="""
        import pytest
        from inner_helpers import run, slow, fast

        @pytest.fixture
        def blocks_in_setup():
            run("asyncio", slow())
            yield

        @pytest.fixture
        def blocks_in_teardown():
            yield
            run("uvloop", slow())

        def test_setup(blocks_in_setup):
            pass

        def test_teardown(blocks_in_teardown):
            run("asyncio", fast())

        def test_fails_on_its_own():
            run("asyncio", slow())
            assert False, "the test's own failure"
        """
    )
    result = run_inner(inner, "--loopwatch-max-callback=50ms")
    result.assert_outcomes(passed=1, failed=1, errors=2)
    result.stdout.fnmatch_lines_random(
        [
            "ERROR test_inner.py::test_setup - loopwatch: 1 loop callback ran longer than 50 ms during setup: Task.__step of slow() * (asyncio)",
            "ERROR test_inner.py::test_teardown - loopwatch: 1 loop callback ran longer than 50 ms during teardown: Task.__step of slow() * (uvloop)",
            # A test that fails by itself keeps its own failure; the slow callback is a report section.
            "FAILED test_inner.py::test_fails_on_its_own - AssertionError: the test's own failure*",
            "*- loopwatch: over the limit during call -*",
            # Counted: the two the limit failed, not the one that failed on its own.
            "loopwatch: 2 tests failed: a loop callback ran longer than 50 ms",
        ]
    )


@pytest.mark.parametrize("value", ["fast", "50 parsecs", "-5ms", "ms"])
def test_bad_option_value_is_a_usage_error(inner, value):
    inner.makepyfile(test_inner="def test_nothing():\n    pass\n")
    result = run_inner(inner, f"--loopwatch-max-callback={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --loopwatch-max-callback: *is not a duration*"])


def test_ini_option_sets_the_limit_and_the_command_line_can_turn_it_off(inner):
    inner.makeini("[pytest]\nloopwatch_max_callback = 50ms\n")
    inner.makepyfile(
        test_inner="""
        from inner_helpers import run, slow

        def test_blocks():
            run("uvloop", slow())
        """
    )
    result = run_inner(inner)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["FAILED test_inner.py::test_blocks - loopwatch: 1 loop callback ran longer than 50 ms: *"])
    run_inner(inner, "--loopwatch-max-callback=off").assert_outcomes(passed=1)
    inner.makeini("[pytest]\nloopwatch_max_callback = soon\n")
    result = run_inner(inner)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: ini option loopwatch_max_callback: 'soon' is not a duration*"])


def test_without_the_option_the_plugin_is_loaded_but_inert(inner):
    inner.makepyfile(
        test_inner="""
        import sys
        from inner_helpers import run, slow

        def test_inert(request):
            assert request.config.pluginmanager.has_plugin("loopwatch")  # found by its entry point
            assert not request.config.pluginmanager.has_plugin("loopwatch-callback-limit")
            assert "loopwatch._shim" not in sys.modules
            run("asyncio", slow())
            run("uvloop", slow())
            assert "loopwatch._shim" not in sys.modules
            import loopwatch
            assert loopwatch.status()["installed"] is False
        """
    )
    result = run_inner(inner)
    result.assert_outcomes(passed=1)
    assert "loopwatch:" not in result.stdout.str()


def test_a_shim_installed_by_the_environment_is_used_as_is(inner, monkeypatch, tmp_path):
    monkeypatch.setenv("LOOPWATCH", "1")
    monkeypatch.setenv("LOOPWATCH_DIR", str(tmp_path / "rings"))
    inner.makepyfile(
        test_inner=f"""
        import loopwatch
        from inner_helpers import run, slow

        def test_blocks():
            assert loopwatch.status()["dir"] == {str(tmp_path / "rings")!r}
            run("asyncio", slow())
        """
    )
    # -W error: loopwatch is imported before pytest marks the entry point's package for assertion
    # rewriting; that must not warn (PYTEST_DONT_REWRITE), with the option or without it.
    result = run_inner(inner, "-W", "error", "--loopwatch-max-callback=50ms")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["FAILED test_inner.py::test_blocks - loopwatch: 1 loop callback ran longer than 50 ms: *"])
    result = run_inner(inner, "-W", "error")
    result.assert_outcomes(passed=1)
    assert "warning" not in result.stdout.str()


# --- parsing, in process -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("50ms", 0.05), ("0.05s", 0.05), ("100us", 1e-4), ("100µs", 1e-4), ("2s", 2.0), ("2", 2.0), (" .5 ", 0.5),
     ("1e-3", 1e-3), ("250 ms", 0.25), ("1500ns", 1.5e-6)],
)
def test_parse_duration(text, seconds):
    assert math.isclose(parse_duration(text), seconds)


@pytest.mark.parametrize("text", ["", "ms", "-1ms", "5 minutes", "1e999", "fast", "50msx"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_seconds():
    assert format_seconds(0.1013) == "101.3 ms"
    assert format_seconds(0.05, precise=False) == "50 ms"
    assert format_seconds(2.5) == "2.5 s"
    assert format_seconds(0.00085) == "850.0 us"


# --- the shim's callback limit, in process ----------------------------------------------------


@pytest.fixture
def callback_limit(ring_dir):
    """Hands the test _shim with no limit and an empty store, and leaves it that way."""
    _shim.set_callback_limit(None)
    _shim.take_over_limit()
    yield _shim
    _shim.set_callback_limit(None)
    _shim.take_over_limit()


def slow_ready():
    time.sleep(0.1)


def slow_timer():
    time.sleep(0.06)


def raises():
    raise RuntimeError("from a callback")


def scenario(loop):
    """Fast and slow callbacks of every kind, one that raises; returns what the application sees."""
    seen: list[object] = []

    async def main():
        running = asyncio.get_running_loop()
        running.call_soon(seen.append, "soon")
        running.call_soon(slow_ready)
        running.call_soon(raises)
        running.call_later(0.001, slow_timer)
        future = running.create_future()
        running.call_soon(future.set_result, 42)
        seen.append(await future)
        await asyncio.sleep(0.2)
        return "done"

    seen.append(loop.run_until_complete(main()))
    return seen


def test_limit_records_only_slow_callbacks_and_changes_nothing_else(loop, callback_limit):
    contexts: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))

    seen_off = scenario(loop)  # limit off: the reference run
    samples_off = [(s.name, s.kind) for s in recorded(loop)]
    assert callback_limit.take_over_limit() == ([], 0)

    callback_limit.set_callback_limit(0.05)
    seen_on = scenario(loop)
    samples_on = [(s.name, s.kind) for s in recorded(loop)][len(samples_off):]
    records, missed = callback_limit.take_over_limit()

    # Same results, same exception delivered to the handler, same samples in the ring.
    assert seen_on == seen_off == ["soon", 42, "done"]
    assert [str(c.get("exception")) for c in contexts] == ["from a callback", "from a callback"]
    # (As multisets: whether the 1 ms timer runs before the ready callbacks depends on the loop's
    # cached time, which differs between a loop's first and later runs, with or without the limit.)
    assert sorted(samples_on) == sorted(samples_off)
    # Exactly the two slow callbacks, named, with their duration and kind.
    assert missed == 0
    by_name = {r["name"]: r for r in records}
    assert len(records) == 2 and set(by_name) == {"test_pytest_plugin.slow_ready", "test_pytest_plugin.slow_timer"}, records
    assert by_name["test_pytest_plugin.slow_ready"]["kind"] == "ready"
    assert by_name["test_pytest_plugin.slow_timer"]["kind"] == "timer"
    assert 0.1 <= by_name["test_pytest_plugin.slow_ready"]["seconds"] < 5
    assert 0.06 <= by_name["test_pytest_plugin.slow_timer"]["seconds"] < 5
    assert {r["loop"] for r in records} == {type(loop).__module__.split(".")[0]}
    assert callback_limit.take_over_limit() == ([], 0)  # taken means cleared

    callback_limit.set_callback_limit(None)
    scenario(loop)
    assert callback_limit.take_over_limit() == ([], 0)


def test_the_store_is_bounded_and_counts_what_did_not_fit(loop, callback_limit):
    callback_limit.set_callback_limit(0)  # every callback is over a limit of zero

    async def main():
        running = asyncio.get_running_loop()
        for _ in range(150):
            running.call_soon(time.sleep, 0)
        await asyncio.sleep(0.01)

    loop.run_until_complete(main())
    records, missed = callback_limit.take_over_limit()
    assert len(records) == 100
    assert len(records) + missed >= 151  # the 150 sleeps and main's own steps
    assert sum(r["name"] == "time.sleep" for r in records) >= 98


@pytest.mark.parametrize(
    ("value", "error"), [(-0.001, ValueError), (float("nan"), ValueError), ("50ms", TypeError), (True, TypeError)]
)
def test_set_callback_limit_refuses_bad_values(callback_limit, value, error):
    with pytest.raises(error):
        callback_limit.set_callback_limit(value)
