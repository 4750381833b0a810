"""End to end, the agent's live page at `/` (issue 7), in a real browser: headless Chromium loads the
page from a running loopwatch-agent watching examples/demo_app.py under uvicorn with 2 workers
(LOOPWATCH=1), lets its script fetch /api/status and render, and the test reads the rendered DOM
(`--dump-dom`), not the JSON:

- both workers' pids are rows of the page;
- while one worker is stuck in a 6 s `/block` (time.sleep in an `async def` endpoint), its row is
  marked stalled and its in-flight cell shows the running callback's age (>= the stall threshold),
  name, endpoint (GET /block) and the line it blocks on (from the shim's stack samples), while the
  other worker's in-flight age stays below it;
- after the stall, the stalled worker's lag cells (last second's max, and the minute's peak) show a
  lag of about the stall's length (uvicorn's 100 ms tick timer ran that late), far above the healthy
  worker's, and the text a reader sees agrees with the number behind it.

Chromium runs with --no-sandbox (root in CI) and a throw-away profile; a missing chromium is a
failure: scripts/install-deps.sh installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest

from e2e_processes import REPO, http_get, http_json, wait_until

SERVICE = "e2e-live"
STALL_MS = 6000
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-first-run", "--disable-extensions"]


class LoopRows(HTMLParser):
    """Reads the rendered page's loop rows: {pid: {cell class: (text, data-value)}} and row classes."""

    def __init__(self):
        super().__init__()
        self.rows: dict[int, dict[str, tuple[str, float | None]]] = {}
        self.row_classes: dict[int, str] = {}
        self._pid: int | None = None
        self._cell: str | None = None
        self._value: float | None = None
        self._text: list[str] = []
        self._depth = 0  # element depth inside the current cell

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-pid" in a:
            self._pid = int(a["data-pid"])
            self.rows[self._pid] = {}
            self.row_classes[self._pid] = a.get("class") or ""
        elif tag == "td" and self._pid is not None:
            classes = (a.get("class") or "").split()
            # The cell's own name: the class that is not a layout or severity class.
            names = [c for c in classes if c not in ("num", "bad", "warn", "dead")]
            self._cell = names[0] if names else f"cell{len(self.rows[self._pid])}"
            self._value = float(a["data-value"]) if "data-value" in a else None
            self._text = []
            self._depth = 0
        elif self._cell is not None:
            self._depth += 1

    def handle_endtag(self, tag):
        if self._cell is not None and tag == "td" and self._depth == 0:
            self.rows[self._pid][self._cell] = (" ".join("".join(self._text).split()), self._value)
            self._cell = None
        elif self._cell is not None and tag != "td":
            self._depth -= 1
        if tag == "tr":
            self._pid = None

    def handle_data(self, data):
        if self._cell is not None:
            self._text.append(data + " ")


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: run scripts/install-deps.sh")
    return path


def render(url: str, workdir: Path) -> LoopRows:
    """Loads url in headless Chromium, lets its script run (virtual time) and parses the final DOM."""
    with tempfile.TemporaryDirectory(dir=workdir) as profile:
        result = subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=1500",
             "--dump-dom", url],
            capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, f"chromium exited {result.returncode}: {result.stderr[-2000:]}"
    dom = result.stdout
    assert 'id="summary"' in dom, f"not the live page: {dom[:500]}"
    error = re.search(r'<div id="error"[^>]*>([^<]*)</div>', dom)
    assert error is not None and error.group(1) == "", f"the page shows an error: {error and error.group(1)}"
    page = LoopRows()
    page.feed(dom)
    return page


def seconds_of(text: str) -> float:
    """The number a reader sees in a duration cell ("2.41 s", "3.96 ms", "85 µs", "0"), in seconds."""
    match = re.match(r"([0-9.]+)\s*(s|ms|µs)?", text)
    assert match, f"not a duration: {text!r}"
    scale = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, None: 1.0}[match.group(2)]
    return float(match.group(1)) * scale


def line_of_block() -> int:
    """The line of demo_app.py's /block endpoint that sleeps (the site the samples name)."""
    lines = (REPO / "examples" / "demo_app.py").read_text().splitlines()
    return next(n for n, line in enumerate(lines, start=1) if line.strip().startswith("time.sleep(ms / 1000)"))


def status_rings(agent_url: str) -> list[dict]:
    return [r for r in http_json(agent_url + "/api/status")["rings"] if r["service"] == SERVICE and r["alive"]]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_live_page_shows_every_worker_and_the_stalled_ones_lag(stack, ring_dir, tmp_path, loop):
    _, agent_url = stack.start_agent(ring_dir)
    env = dict(os.environ, LOOPWATCH="1", LOOPWATCH_DIR=str(ring_dir), LOOPWATCH_SERVICE=SERVICE)
    _, app_url = stack.start_uvicorn("examples.demo_app:app", env, "--workers", "2", "--loop", loop,
                                     "--no-access-log")
    # Both workers' rings mapped, each with a closed one-second window (the page's numbers).
    rings = wait_until(lambda: (r := status_rings(agent_url)) and len(r) == 2
                       and all(x["recent"] is not None for x in r) and r, 20, "2 worker rings with a window")
    pids = sorted(r["pid"] for r in rings)

    page = render(agent_url + "/", tmp_path)
    assert sorted(page.rows) == pids, f"page rows {sorted(page.rows)} != worker pids {pids}"

    # Stall one worker; find it by its in-flight age once the stall threshold (1 s) has passed.
    blocked: list = []
    thread = threading.Thread(target=lambda: blocked.append(http_get(app_url + f"/block?ms={STALL_MS}", 30)),
                              daemon=True)
    thread.start()
    stalled_ring = wait_until(lambda: next((r for r in status_rings(agent_url) if r["inflight_seconds"] >= 1.0), None),
                              10, "a worker's in-flight callback older than 1 s")
    stalled, healthy = stalled_ring["pid"], next(p for p in pids if p != stalled_ring["pid"])

    during = render(agent_url + "/", tmp_path)
    assert sorted(during.rows) == pids
    assert "stalled" in during.row_classes[stalled].split(), during.row_classes
    inflight_text, inflight_value = during.rows[stalled]["inflight"]
    assert inflight_value >= 1.0 and seconds_of(inflight_text) >= 1.0, inflight_text
    assert "run_asgi" in inflight_text, f"the in-flight cell should name uvicorn's request step: {inflight_text!r}"
    # ... and, from the shim's stack samples, the endpoint and the line it blocks on.
    assert "GET /block" in inflight_text, inflight_text
    assert f"at examples.demo_app.block (examples/demo_app.py:{line_of_block()})" in inflight_text, inflight_text
    assert during.rows[healthy]["inflight"][1] < 1.0
    assert "stalled" not in during.row_classes[healthy].split()

    thread.join(30)
    assert blocked and blocked[0][0] == 200, blocked
    assert f'"pid":{stalled}' in blocked[0][1].replace(" ", ""), "the blocked request ran on another worker"

    # After the stall: uvicorn's 100 ms tick timer ran ~6 s late. The window that saw it closes within
    # a second; the minute's peak keeps it.
    def lag_shown():
        p = render(agent_url + "/", tmp_path)
        return p if p.rows.get(stalled, {}).get("lag-peak", ("", 0))[1] >= 1.0 else None

    after = wait_until(lag_shown, 15, "the stalled worker's lag on the page")
    assert sorted(after.rows) == pids
    peak_text, peak_value = after.rows[stalled]["lag-peak"]
    assert 1.0 <= peak_value <= STALL_MS / 1000 + 1.0, peak_text
    assert seconds_of(peak_text) == pytest.approx(peak_value, rel=0.01, abs=0.01), (peak_text, peak_value)
    healthy_peak = after.rows[healthy]["lag-peak"][1]
    assert healthy_peak < 0.5 * peak_value, f"healthy worker's peak lag {healthy_peak} vs stalled {peak_value}"
    assert after.rows[stalled]["stalls"][1] >= 1
    # The numbers on the page are the agent's: the same pids and the same stall count.
    assert {r["pid"]: r["stalls"] for r in status_rings(agent_url)}[stalled] == after.rows[stalled]["stalls"][1]
