"""The agent's costs, measured on the REAL loopwatch-agent binary as a separate process fed by
synthetic writers (build/bench/synthetic_writer: rings made exactly like the shim makes them).

  python bench/agent_throughput.py            # full run (about 2 minutes)
  python bench/agent_throughput.py --quick    # CI smoke run: every row, short windows, 1 round

1. Drain throughput: 1, 16 and 64 rings written at full speed; samples drained (the agent's
   /api/status samples_drained, i.e. loopwatch_agent_samples_drained_total) per agent CPU-second
   (utime + stime deltas of /proc/<pid>/stat) over a window after a warm-up. Fresh agent and writer
   per run, rounds interleave the ring counts in a shuffled order, the figure is the median.
2. /metrics scrape with 64 live rings, 32 callback names each (so every loop has K=20 named series
   plus "other"): wall time of complete GETs on fresh connections (median, p90, max) and size, plain
   and with Accept-Encoding: gzip (what Prometheus sends), alternating.
3. Agent memory with 64 rings (/proc/<pid>/status): VmRSS, split into the agent's own pages
   (RssAnon + RssFile) and the ring pages it shares with the writers (RssShmem, the rings live in
   /dev/shm as in production).
4. Drops at a sustained 1 M samples/s into one default-size ring, default drain interval.

The agent runs pinned to CPU 0 and the writer to CPU 1 (on a machine with 2+ CPUs). Targets are
printed with the figure and met/missed; nothing is asserted on timings.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from agent_process import ROOT, AgentProcess, metric_sum, pin

WRITER = ROOT / "build" / "bench" / "synthetic_writer"
RING_COUNTS = [1, 16, 64]
NAMES_PER_RING = 32
TOP_K = 20


class Writer:
    """synthetic_writer writing `rings` rings; ready once every ring is published."""

    def __init__(self, ring_dir: str, rings: int, rate: float, seconds: float):
        self.proc = subprocess.Popen([str(WRITER), ring_dir, str(rings), str(rate), str(seconds), str(NAMES_PER_RING)],
                                     stdout=subprocess.PIPE, text=True)
        pin(self.proc.pid, 1)
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.wait()
            raise RuntimeError(f"synthetic_writer failed (exit {self.proc.returncode})")

    def totals(self) -> dict:
        """The JSON line the writer prints when its SECONDS are over (blocks until then)."""
        return json.loads(self.proc.stdout.readline())

    def stop(self) -> dict | None:
        """SIGTERM; returns the totals line if the writer was still writing."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=10)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else None


class Session:
    """A fresh ring dir in /dev/shm (tmpfs, as in production), an agent and a writer; torn down on exit."""

    def __init__(self, work: str, agent_flags: list[str]):
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.ring_dir = tempfile.mkdtemp(prefix="lw-bench-agent-", dir=shm)
        self.agent = AgentProcess(self.ring_dir, os.path.join(work, f"agent-{time.monotonic_ns()}.log"), *agent_flags,
                                  cpu=0)
        self.writer: Writer | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.writer is not None and self.writer.proc.poll() is None:
            self.writer.stop()
        self.agent.close()
        shutil.rmtree(self.ring_dir, ignore_errors=True)


def drain_run(work: str, rings: int, warmup: float, window: float) -> dict:
    with Session(work, []) as s:
        s.writer = Writer(s.ring_dir, rings, 0, 0)
        s.agent.wait_rings(rings)
        time.sleep(warmup)
        samples0, cpu0 = s.agent.status()["agent"]["samples_drained"], s.agent.cpu_seconds()
        time.sleep(window)
        cpu1, samples1 = s.agent.cpu_seconds(), s.agent.status()["agent"]["samples_drained"]
        memory = s.agent.memory_kb()
        written = s.writer.stop()
    cpu = cpu1 - cpu0
    return {"samples": samples1 - samples0, "cpu": cpu, "rate": (samples1 - samples0) / cpu if cpu > 0 else 0.0,
            "memory": memory, "written": written}


def scrape_run(work: str, scrapes: int, settle: float) -> dict:
    rings = RING_COUNTS[-1]
    with Session(work, ["--callbacks.top-k", str(TOP_K)]) as s:
        s.writer = Writer(s.ring_dir, rings, rings * 5_000, 0)  # 5 k samples/s per ring: live, not saturated
        s.agent.wait_rings(rings)
        time.sleep(settle)
        times = {"identity": [], "gzip": []}
        sizes = {"identity": [], "gzip": []}
        body = b""
        for _ in range(scrapes):  # alternate plain and gzip (what Prometheus asks for) GETs
            for encoding in times:
                start = time.perf_counter()
                got = s.agent.get("/metrics", {"Accept-Encoding": encoding})
                times[encoding].append(time.perf_counter() - start)
                sizes[encoding].append(len(got))
                body = got if encoding == "identity" else body
                time.sleep(0.1)
        memory = s.agent.memory_kb()
    per_loop: dict[str, set[str]] = {}
    for match in re.finditer(r'^loopwatch_named_callback_duration_seconds_count\{callback="([^"]*)",loop="(\d+)"',
                             body.decode(), re.MULTILINE):
        per_loop.setdefault(match.group(2), set()).add(match.group(1))
    # The agent's own account of each scrape (collect + write, without the transfer), all scrapes so far.
    text = body.decode()
    agent_sum = re.search(r"^loopwatch_agent_scrape_duration_seconds_sum (\S+)$", text, re.MULTILINE)
    agent_count = re.search(r"^loopwatch_agent_scrape_duration_seconds_count (\S+)$", text, re.MULTILINE)
    agent_mean_ms = (float(agent_sum.group(1)) / float(agent_count.group(1)) * 1e3
                     if agent_sum and agent_count and float(agent_count.group(1)) > 0 else float("nan"))
    return {"times": times, "agent_mean_ms": agent_mean_ms,
            "bytes": {e: statistics.median(v) for e, v in sizes.items()}, "lines": body.count(b"\n"),
            "loops": len(per_loop),
            "series_min": min((len(v) for v in per_loop.values()), default=0), "memory": memory}


def drop_run(work: str, seconds: float) -> dict:
    with Session(work, []) as s:  # default drain interval (50 ms) and ring size (131072 samples)
        s.writer = Writer(s.ring_dir, 1, 1_000_000, seconds)
        s.agent.wait_rings(1)
        totals = s.writer.totals()
        time.sleep(0.3)  # a few drain cycles for the tail
        metrics = s.agent.get("/metrics").decode()
    return {**totals, "agent_dropped": metric_sum(metrics, "loopwatch_dropped_samples_total"),
            "agent_drained": metric_sum(metrics, "loopwatch_agent_samples_drained_total")}


def mb(kb: int) -> str:
    return f"{kb / 1024:.1f}"


def met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run for CI: short windows, one round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=8.0, help="seconds of each drain measurement")
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--drop-seconds", type=float, default=10.0)
    args = parser.parse_args()
    for binary in (WRITER, ROOT / "build" / "agent" / "loopwatch-agent"):
        if not binary.exists():
            print(f"missing {binary}: run scripts/build.sh first", file=sys.stderr)
            return 1
    if args.quick:
        rounds, window, warmup, scrapes, drop_seconds, settle = 1, 1.0, 0.3, 3, 1.0, 1.0
    else:
        rounds, window, warmup, scrapes, drop_seconds, settle = (args.rounds, args.window, 1.0, args.scrapes,
                                                                 args.drop_seconds, 2.0)

    work = tempfile.mkdtemp(prefix="lw-bench-agent-logs-")
    runs: dict[int, list[dict]] = {n: [] for n in RING_COUNTS}
    try:
        for r in range(rounds):
            order = RING_COUNTS[:]
            random.shuffle(order)
            for rings in order:
                runs[rings].append(drain_run(work, rings, warmup, window))
            print(f"drain round {r + 1}/{rounds} done", file=sys.stderr)
        scrape = scrape_run(work, scrapes, settle)
        print("scrape done", file=sys.stderr)
        drops = drop_run(work, drop_seconds)
        print("drop run done", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n## Agent drain throughput, writers at full speed (median of {rounds} interleaved rounds, "
          f"{window:g} s windows, fresh agent + writer per run)")
    print("| rings | samples drained | agent CPU-s | agent CPU % of a core | M samples / agent CPU-s |")
    print("|---|---|---|---|---|")
    rates = {}
    for rings in RING_COUNTS:
        rates[rings] = statistics.median(run["rate"] for run in runs[rings])
        samples = statistics.median(run["samples"] for run in runs[rings])
        cpu = statistics.median(run["cpu"] for run in runs[rings])
        print(f"| {rings} | {samples:,.0f} | {cpu:.2f} | {100 * cpu / window:.0f} % | {rates[rings] / 1e6:.1f} |")

    print(f"\n## /metrics scrape, {scrape['loops']} live rings x {NAMES_PER_RING} callback names, "
          f"--callbacks.top-k {TOP_K} ({scrapes} GETs each, fresh connection, wall time of the full response)")
    print("| encoding | rings | callback series per ring (min) | lines | bytes | median ms | p90 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|")
    scrape_ms = {}
    for encoding, times in scrape["times"].items():
        ms = sorted(t * 1e3 for t in times)
        scrape_ms[encoding] = statistics.median(ms)
        p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
        print(f"| {encoding} | {scrape['loops']} | {scrape['series_min']} | {scrape['lines']:,} "
              f"| {scrape['bytes'][encoding]:,.0f} | {scrape_ms[encoding]:.1f} | {p90:.1f} | {ms[-1]:.1f} |")
    print(f"\nAgent side (loopwatch_agent_scrape_duration_seconds: collect + write, no transfer, no client): "
          f"{scrape['agent_mean_ms']:.1f} ms mean over the run's scrapes.")

    full = runs[64][-1]["memory"]
    print("\n## Agent memory with 64 rings (MB, /proc/<pid>/status)")
    print("| writers | VmRSS | VmHWM | own: RssAnon + RssFile | ring pages shared with writers: RssShmem |")
    print("|---|---|---|---|---|")
    for label, m in (("paced, 5 k samples/s per ring", scrape["memory"]), ("full speed", full)):
        print(f"| {label} | {mb(m['VmRSS'])} | {mb(m['VmHWM'])} | {mb(m['RssAnon'] + m['RssFile'])} "
              f"| {mb(m['RssShmem'])} |")

    print(f"\n## Drops at 1 M samples/s into one ring (131072 samples, drain every 50 ms, {drop_seconds:g} s)")
    print("| achieved rate | samples pushed | dropped (ring header) | dropped (agent metric) | drained by agent |")
    print("|---|---|---|---|---|")
    print(f"| {drops['rate'] / 1e6:.3f} M/s | {drops['attempted']:,} | {drops['dropped']:,} "
          f"| {drops['agent_dropped']:,.0f} | {drops['agent_drained']:,.0f} |")

    worst = min(rates, key=rates.get)
    own = max(m["RssAnon"] + m["RssFile"] for m in (scrape["memory"], full))
    total = max(m["VmRSS"] for m in (scrape["memory"], full))
    print("\n## Agent targets")
    print("| target | figure | |")
    print("|---|---|---|")
    rings_text = f"{worst} ring{'s' if worst > 1 else ''}"
    print(f"| >= 20 M samples drained per agent CPU-s | {rates[worst] / 1e6:.1f} M (lowest: {rings_text}) "
          f"| {met(rates[worst] >= 20e6)} |")
    for encoding, ms in scrape_ms.items():
        print(f"| /metrics scrape of 64 rings < 20 ms ({encoding}, client wall time) | {ms:.1f} ms median | {met(ms < 20)} |")
    agent_ms = scrape["agent_mean_ms"]
    print(f"| /metrics scrape of 64 rings < 20 ms (agent side) | {agent_ms:.1f} ms mean | {met(agent_ms < 20)} |")
    print(f"| RSS < 32 MB with 64 rings (VmRSS, incl. shared ring pages) | {mb(total)} MB | {met(total < 32 * 1024)} |")
    print(f"| RSS < 32 MB with 64 rings (agent's own pages) | {mb(own)} MB | {met(own < 32 * 1024)} |")
    print(f"| 0 drops at 1 M callbacks/s into one ring | {drops['dropped']:,} dropped at {drops['rate'] / 1e6:.3f} M/s "
          f"| {met(drops['dropped'] == 0)} |")
    ok = scrape["loops"] == 64 and all(run["samples"] > 0 for rs in runs.values() for run in rs)
    if not ok:
        print("ERROR: a run measured nothing (see the rows above)", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
