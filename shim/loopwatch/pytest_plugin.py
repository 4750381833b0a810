"""pytest plugin: ``pytest --loopwatch-max-callback=50ms`` fails every test in which a loop callback
(asyncio or uvloop, any loop the test creates or runs) ran longer than the limit, naming the callback
and its duration. It exists so that a CI run catches a blocking call in async code the way the
in-process monitors people use in CI do, at the shim's cost instead of theirs.

Loaded by pytest through the ``pytest11`` entry point ``loopwatch`` (or ``-p loopwatch.pytest_plugin``).
Inert unless the option or the ``loopwatch_max_callback`` ini value is given: without them it
imports nothing of the shim and registers no per-test hook, only the marker (so that
``--strict-markers`` suites that use it still run without the option).

When active, it installs the shim at configure time (rings in a private temporary directory, unless
``LOOPWATCH=1`` installed it already), sets the shim's in-process callback limit
(``_shim.set_callback_limit``; the C++ check is one compare per callback), and around each phase of
each test (setup, call, teardown) takes the callbacks that went over it. Over-limit callbacks in a
phase that otherwise passed fail that phase (a setup/teardown error, or a failed test); in a phase
that failed anyway they are shown as a report section.

Per test: ``@pytest.mark.loopwatch_max_callback(None)`` (no limit) or ``("500ms")`` (another one).
"""
from __future__ import annotations

import math
import re
import shutil
import tempfile
from typing import Any

import pytest

MARKER = "loopwatch_max_callback"
INI = "loopwatch_max_callback"
OFF_VALUES = ("off", "none", "no", "false")
MAX_LISTED = 10  # offenders spelled out in one failure message; the rest are counted
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
_LIMIT_KEY = pytest.StashKey["float | None"]()  # the limit in force for an item's phases
_DURATION = re.compile(r"^\s*((?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(ns|us|µs|ms|s)?\s*$")


def parse_duration(text: str) -> float:
    """``"50ms"``, ``"0.05s"``, ``"100us"``, ``"2s"``, ``"0.5"`` (seconds) -> seconds. ValueError else."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration (like 50ms, 0.05s, 100us, 2s, or seconds)")
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is not a finite duration")
    return seconds


def format_seconds(seconds: float, precise: bool = True) -> str:
    """101.3 ms, 2.5 s, 850 us. `precise=False` drops trailing zeros (for the limit: "50 ms")."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale or unit == "us":
            value = seconds / scale
            return f"{value:.1f} {unit}" if precise else f"{value:g} {unit}"
    raise AssertionError("unreachable")


class LoopwatchFailure(pytest.fail.Exception):  # type: ignore[misc,name-defined]
    """A failure the plugin raises. A subclass of pytest's Failed (pytrace=False): the report shows
    only the message; the type tells the plugin its own failures from the test's."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, pytrace=False)


class CallbackLimitExceeded(LoopwatchFailure):
    """Raised at the end of a phase in which callbacks went over the limit."""


class BadMarker(LoopwatchFailure):
    """A loopwatch_max_callback marker whose limit is not one: fails the test's setup."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("loopwatch", "loopwatch: event loop callback limit")
    group.addoption(
        "--loopwatch-max-callback",
        dest="loopwatch_max_callback",
        default=None,
        metavar="DURATION",
        help="fail a test in which any asyncio/uvloop loop callback ran longer than DURATION "
        "(50ms, 0.05s, 100us, 2s; a bare number is seconds; 'off' disables the ini value)",
    )
    parser.addini(INI, "default for --loopwatch-max-callback (e.g. 50ms); empty: off")


def _configured_limit(config: pytest.Config) -> float | None:
    raw = config.getoption("loopwatch_max_callback")
    source = "--loopwatch-max-callback"
    if raw is None:
        raw = config.getini(INI)
        source = f"ini option {INI}"
    raw = str(raw or "").strip()
    if not raw or raw.lower() in OFF_VALUES:
        return None
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise pytest.UsageError(f"{source}: {exc}") from None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(limit): this test's loopwatch callback limit: None (no limit) or a duration "
        "('500ms', or seconds); only with --loopwatch-max-callback",
    )
    limit = _configured_limit(config)
    if limit is not None:
        plugin = CallbackLimitPlugin(config, limit)
        config.pluginmanager.register(plugin, "loopwatch-callback-limit")
        config.pluginmanager.register(_PhaseChecks(plugin), "loopwatch-callback-limit-checks")


class CallbackLimitPlugin:
    """The active part, registered only when a limit is configured."""

    def __init__(self, config: pytest.Config, limit: float) -> None:
        import loopwatch
        from loopwatch import _shim

        self.config = config
        self.limit = limit
        self.shim = _shim
        self.failed_tests: set[str] = set()
        self.ring_dir: str | None = None
        if not loopwatch.status()["installed"]:
            # Rings nobody drains: a small ring keeps each live loop's file small. The limit check
            # runs before the ring write, so a full ring loses no over-limit callback.
            self.ring_dir = tempfile.mkdtemp(prefix="loopwatch-pytest-")
            loopwatch.install(dir=self.ring_dir, service="pytest", ring_capacity=1024)
        _shim.set_callback_limit(limit)
        _shim.take_over_limit()  # whatever ran before the session (conftest imports) is not a test's

    # --- per test ---------------------------------------------------------------------------

    def _limit_for(self, item: pytest.Item) -> float | None:
        marker = item.get_closest_marker(MARKER)
        if marker is None:
            return self.limit
        if len(marker.args) + len(marker.kwargs) != 1 or (marker.kwargs and "limit" not in marker.kwargs):
            raise BadMarker(f"loopwatch: @pytest.mark.{MARKER} takes one limit: None, '500ms' or seconds")
        value = marker.args[0] if marker.args else marker.kwargs["limit"]
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
            return float(value)
        error = ""
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            error = str(exc)
        raise BadMarker(f"loopwatch: @pytest.mark.{MARKER}: {error}")  # outside `except`: no chained traceback

    def _begin(self, item: pytest.Item, when: str) -> None:
        self.shim.take_over_limit()  # between phases (other plugins' hooks) belongs to no phase
        if when == "setup":  # a bad marker fails setup once; call is then skipped, teardown uses the default
            item.stash[_LIMIT_KEY] = self._limit_for(item)
        self.shim.set_callback_limit(item.stash.get(_LIMIT_KEY, self.limit))

    def _end(self, item: pytest.Item, when: str) -> None:
        records, missed = self.shim.take_over_limit()
        if records or missed:
            raise CallbackLimitExceeded(self._message(item, when, records, missed))

    def _message(self, item: pytest.Item, when: str, records: list[dict[str, Any]], missed: int) -> str:
        count = len(records) + missed
        limit = item.stash.get(_LIMIT_KEY, self.limit)
        head = f"loopwatch: {count} loop callback{'s' if count != 1 else ''} ran longer than "
        head += format_seconds(limit or 0.0, precise=False)
        if when != "call":
            head += f" during {when}"
        lines = [f"{r['name']} took {format_seconds(r['seconds'])} ({r['loop']})" for r in records[:MAX_LISTED]]
        rest = count - len(lines)
        if count == 1:
            return f"{head}: {lines[0]}" if lines else f"{head}"
        text = head + ":" + "".join(f"\n  {line}" for line in lines)
        return text + (f"\n  ... and {rest} more" if rest else "")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item):
        self._begin(item, "setup")
        yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        self._begin(item, "call")
        yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item):
        self._begin(item, "teardown")
        yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        if call.excinfo is not None and call.excinfo.errisinstance(LoopwatchFailure):
            _set_crash_message(report, item, str(call.excinfo.value))
            if call.excinfo.errisinstance(CallbackLimitExceeded):
                report.user_properties.append(("loopwatch_over_limit", call.when))
                return
        # The phase raised on its own before the check ran: show what went over the limit anyway.
        records, missed = self.shim.take_over_limit()
        if (records or missed) and report.failed:
            report.sections.append((f"loopwatch: over the limit during {call.when}", self._message(item, call.when, records, missed)))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # From the reports (not the items), so that with xdist the controller counts too.
        if report.failed and any(name == "loopwatch_over_limit" for name, _ in report.user_properties):
            self.failed_tests.add(report.nodeid)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        import loopwatch

        limit = format_seconds(self.limit, precise=False)
        n = len(self.failed_tests)
        terminalreporter.section("loopwatch", sep="-")
        if n:
            line = f"loopwatch: {n} test{'s' if n != 1 else ''} failed: a loop callback ran longer than {limit}"
            terminalreporter.write_line(line, red=True, bold=True)
        else:
            terminalreporter.write_line(f"loopwatch: no test ran a loop callback longer than {limit}")
        status = loopwatch.status()
        for kind in ("asyncio", "uvloop"):
            if str(status[kind]).startswith("stock"):
                terminalreporter.write_line(f"loopwatch: {kind} callbacks were not checked: {status[kind]}", yellow=True)
        if status["error"]:
            terminalreporter.write_line(f"loopwatch: some loops were not checked: {status['error']}", yellow=True)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.shim.set_callback_limit(None)
        self.shim.take_over_limit()
        if self.ring_dir is not None:  # we installed it: leave the process as we found it
            import loopwatch

            loopwatch.uninstall()
            self.shim.close_all()
            shutil.rmtree(self.ring_dir, ignore_errors=True)


def _set_crash_message(report: pytest.TestReport, item: pytest.Item, message: str) -> None:
    """The short summary reads "FAILED ... - loopwatch: 1 loop callback ...". pytest 7.x gives a
    pytrace=False failure no crash line (the summary would say only "FAILED test_x.py::test_y"): give it
    one. pytest 8+ makes one that starts with the qualified class name: say just the message."""
    longrepr = report.longrepr
    crash = getattr(longrepr, "reprcrash", False)
    if crash is False:  # no excinfo repr
        return
    if crash is not None:
        try:
            crash.message = message
        except AttributeError:  # a frozen crash line (another pytest): the report still has the message
            pass
        return
    try:
        from _pytest._code.code import ReprFileLocation
    except ImportError:  # another pytest: its summary line may lack the message, the report has it
        return
    path, lineno, _ = item.location
    longrepr.reprcrash = ReprFileLocation(path=path, lineno=(lineno or 0) + 1, message=message)  # type: ignore[union-attr]


class _PhaseChecks:
    """The end-of-phase checks. They run after pytest's own implementation of each phase (trylast),
    so only when the phase did not raise; hookwrappers (capture, logging) are still around them. A
    separate object, because one object cannot hold two implementations of the same hook."""

    def __init__(self, plugin: CallbackLimitPlugin) -> None:
        self.plugin = plugin

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.plugin._end(item, "setup")

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        self.plugin._end(item, "call")

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        self.plugin._end(item, "teardown")
