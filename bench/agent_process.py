"""The real loopwatch-agent as a child process, for the benchmarks that need one running
(uvicorn_throughput.py, agent_throughput.py): start it on a free port, read its /api/status and
/metrics, its CPU time and memory from /proc, and stop it. Shared so both drive the agent alike.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / "build" / "agent" / "loopwatch-agent"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def pin(pid: int, cpu: int) -> None:
    """Pins `pid` to one CPU when the machine has more than one (agent and writers apart)."""
    if os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(pid, {cpu % os.cpu_count()})


class AgentProcess:
    """loopwatch-agent serving on 127.0.0.1:<free port>, logging to ring_dir/../agent-<n>.log."""

    def __init__(self, ring_dir: str, log_path: str, *flags: str, cpu: int | None = None):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([str(AGENT), "--ring.dir", ring_dir, "--web.listen-address", "127.0.0.1:0",
                                      "--log.level", "info", *flags], stdout=self.log, stderr=subprocess.STDOUT)
        if cpu is not None:
            pin(self.proc.pid, cpu)
        self.port = self._wait_port()

    def _wait_port(self) -> int:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            match = re.search(r"listening on http://[^:]+:(\d+)", Path(self.log_path).read_text())
            if match:
                return int(match.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.close()
        raise RuntimeError(f"agent did not start; log:\n{Path(self.log_path).read_text()}")

    def get(self, path: str, headers: dict[str, str] | None = None) -> bytes:
        """A complete GET on a fresh connection; the body as sent (gzip stays compressed)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {response.status}")
            return body
        finally:
            conn.close()

    def status(self) -> dict:
        return json.loads(self.get("/api/status"))

    def wait_rings(self, count: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while self.status()["agent"]["rings_mapped"] < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"agent mapped {self.status()['agent']['rings_mapped']} of {count} rings")
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        """utime + stime of the whole agent process (all threads), from /proc/<pid>/stat."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of the full line

    def memory_kb(self) -> dict[str, int]:
        """VmRSS, VmHWM, RssAnon, RssFile, RssShmem in kB, from /proc/<pid>/status."""
        out = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0])
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def metric_sum(text: str, name: str) -> float:
    """Sum of every sample of metric `name` (any labels) in a Prometheus text exposition."""
    total = 0.0
    for match in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE):
        total += float(match.group(1))
    return total
