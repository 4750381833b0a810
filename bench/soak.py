"""Soak: does the agent stay flat (memory, drops) over a long run at a high callback rate?

  python bench/soak.py                      # 10 minutes, 4 workers, 250 k callbacks/s each
  python bench/soak.py --minutes 0.2        # short mode (12 s): every row, for a smoke check
  python bench/soak.py --rate 0             # workers at full speed instead of paced

Why it exists: the other benchmarks run for seconds; a leak of a few bytes per sample, per scrape or
per name, or a drain that falls behind only after minutes, shows up only in a long run. Not run in CI.

Method: the real loopwatch-agent (default flags: drain 50 ms, scan 500 ms, top-K 20) drains a fresh
ring dir in /dev/shm. Four LOOPWATCH=1 worker processes (2 asyncio, 2 uvloop; default ring size)
each wait until the agent has attached their ring, then run a paced mix for the whole soak: call_soon
callbacks spread Zipf-like over 64 distinct callback names (more names than top-K, so the agent ranks
and folds into "other"), plus a few timer-driven tasks (asyncio.sleep timers, Task steps). Every few
seconds (--scrape-seconds) the benchmark scrapes /metrics (as Prometheus would), reads /api/status and
the agent's VmRSS / RssAnon / CPU time / run-queue wait from /proc. One table row per minute
(--row-seconds): agent RSS, callbacks/s (drained + dropped per second, from the agent's counters),
samples drained and drops so far. At the end the workers stop (SIGTERM, clean exit) and report their
own shim-side counters; the agent's final drain must then account for every sample exactly:
agent drained == sum of samples the shims wrote, agent drops == sum of drops the shims counted.

Drops: the shim counts a drop only when the ring is full (write_pos - read_pos == capacity). The
summary splits them into drops before the agent attached (reported by each worker; 0 by design: a
worker starts its load only once /api/status lists its ring) and drops while the agent ran, with each
row's agent run-queue wait (time the agent was runnable but not on a CPU) and largest backlog seen,
the counted causes a running agent can fall behind for.

RSS: VmRSS = the agent's own pages (RssAnon + RssFile) + the ring pages it has touched and not yet
released (RssShmem: the same physical pages the writers write; they follow the backlog at the moment
of the reading). Both are printed; the 5 % flatness target is judged on VmRSS.

Nothing is asserted on timings; the exit code is 1 only if the accounting does not balance or a
process died.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from agent_process import ROOT, AgentProcess, metric_sum  # noqa: E402

SERVICE = "soak"
LOOP_KINDS = ["asyncio", "uvloop"]


# --------------------------------------------------------------------------------------------------
# Worker: `python bench/soak.py --worker LOOP RATE NAMES` (LOOPWATCH=1 in its environment)
# --------------------------------------------------------------------------------------------------

def worker(loop_kind: str, rate: float, names: int) -> int:
    import asyncio
    import random

    from loopwatch import _shim

    if loop_kind == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(asyncio.sleep(0))  # the first callbacks create the ring
    status = _shim.loop_status(loop)
    if not status or not status.get("file"):
        print(json.dumps({"event": "error", "status": status}), flush=True)
        return 1
    # Wait (loop not running: no callbacks) until the driver has seen the agent attach this ring. Not
    # by reading our own ring file: closing any descriptor of it would drop the shim's fcntl lock.
    capacity = int(os.environ.get("LOOPWATCH_RING_CAPACITY") or _shim.DEFAULT_RING_CAPACITY)
    print(json.dumps({"event": "ring", "pid": os.getpid(), "file": status["file"], "capacity": capacity}), flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    at_attach = _shim.loop_status(loop)
    print(json.dumps({"event": "attached", "pid": os.getpid(), "dropped": at_attach["dropped"]}), flush=True)

    # Distinct code objects, so each name is its own callback key and name-table entry.
    funcs = []
    for i in range(names):
        namespace: dict = {}
        exec(f"def soak_callback_{i:03d}():\n    pass\n", namespace)
        funcs.append(namespace[f"soak_callback_{i:03d}"])
    rng = random.Random(os.getpid())
    order = rng.choices(funcs, weights=[1 / (i + 1) for i in range(names)], k=8192)

    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(None))

    async def ticker(period: float) -> None:  # timers + Task steps, ~1/period per second
        while not stop.done():
            await asyncio.sleep(period)

    async def driver() -> None:  # paced call_soon callbacks; rate 0 = as fast as the loop runs them
        start = time.monotonic()
        scheduled = 0
        call_soon = loop.call_soon
        while not stop.done():
            due = int((time.monotonic() - start) * rate) if rate > 0 else scheduled + 4096
            n = min(due - scheduled, 4096)
            if n <= 0:
                await asyncio.sleep(0.001)
                continue
            base = scheduled % len(order)
            for k in range(n):
                call_soon(order[(base + k) % len(order)])
            scheduled += n
            await asyncio.sleep(0)  # lets the batch run

    async def main() -> None:
        tasks = [asyncio.ensure_future(driver())] + [asyncio.ensure_future(ticker(p)) for p in (0.001, 0.005, 0.02)]
        await stop
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    loop.run_until_complete(main())
    final = _shim.loop_status(loop)
    print(json.dumps({"event": "done", "pid": os.getpid(), **final}), flush=True)
    loop.close()
    return 0


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------

def python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


class Worker:
    """One LOOPWATCH=1 worker process; its JSON lines arrive on a queue (read by a thread)."""

    def __init__(self, ring_dir: str, loop_kind: str, rate: float, names: int, log_path: str):
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPWATCH")}
        env.update(LOOPWATCH="1", LOOPWATCH_DIR=ring_dir, LOOPWATCH_SERVICE=SERVICE)
        self.loop_kind = loop_kind
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([python(), str(Path(__file__).resolve()), "--worker", loop_kind, str(rate),
                                      str(names)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, start_new_session=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))
        self.lines.put(None)

    def expect(self, event: str, timeout: float) -> dict:
        try:
            msg = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"worker {self.proc.pid} ({self.loop_kind}): no '{event}' "
                               f"within {timeout:.0f} s") from None
        if msg is None or msg.get("event") != event:
            raise RuntimeError(f"worker {self.proc.pid} ({self.loop_kind}): expected '{event}', got {msg} "
                               f"(exit code {self.proc.poll()}, log {self.log.name})")
        return msg

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self.log.close()


def schedstat_wait_s(pid: int) -> float:
    """Seconds all threads of pid spent runnable but waiting for a CPU (field 2 of schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return total / 1e9


def take_sample(agent: AgentProcess, t0: float) -> dict:
    text = agent.get("/metrics").decode()
    status = agent.status()
    mem = agent.memory_kb()
    rings = status["rings"]
    return {
        "t": time.monotonic() - t0,
        "rss_kb": mem["VmRSS"], "own_kb": mem["RssAnon"] + mem["RssFile"], "shmem_kb": mem["RssShmem"],
        "drained": metric_sum(text, "loopwatch_agent_samples_drained_total"),
        "callbacks": metric_sum(text, "loopwatch_callbacks_total"),
        "dropped": metric_sum(text, "loopwatch_dropped_samples_total"),
        "evictions": metric_sum(text, "loopwatch_callback_name_evictions_total"),
        "named_series": len(re.findall(r"^loopwatch_named_callback_duration_seconds_count\{", text, re.MULTILINE)),
        "backlog": max((r["backlog"] for r in rings), default=0),
        "rings": len(rings),
        "cpu_s": agent.cpu_seconds(),
        "wait_s": schedstat_wait_s(agent.proc.pid),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the soak (0.2 = 12 s short mode)")
    parser.add_argument("--workers", type=int, default=4, help="worker processes, alternating asyncio and uvloop")
    parser.add_argument("--rate", type=float, default=250_000,
                        help="call_soon callbacks per second per worker; 0 = as fast as each loop can run them")
    parser.add_argument("--names", type=int, default=64, help="distinct callback names per worker")
    parser.add_argument("--scrape-seconds", type=float, default=5.0, help="seconds between scrapes")
    parser.add_argument("--row-seconds", type=float, default=60.0,
                        help="seconds per table row (a short soak gets at least 4 rows)")
    parser.add_argument("--worker", nargs=3, metavar=("LOOP", "RATE", "NAMES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker[0], float(args.worker[1]), int(args.worker[2]))

    agent_binary = ROOT / "build" / "agent" / "loopwatch-agent"
    if not agent_binary.exists():
        print(f"missing {agent_binary}: run scripts/build.sh first", file=sys.stderr)
        return 1
    duration = args.minutes * 60
    row_seconds = min(args.row_seconds, duration / 4)
    scrape_seconds = min(args.scrape_seconds, row_seconds / 2)

    work = tempfile.mkdtemp(prefix="lw-soak-")
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    ring_dir = tempfile.mkdtemp(prefix="lw-soak-rings-", dir=shm)
    agent = AgentProcess(ring_dir, os.path.join(work, "agent.log"))
    workers: list[Worker] = []
    ok = True
    try:
        for i in range(args.workers):
            log = os.path.join(work, f"worker-{i}.log")
            workers.append(Worker(ring_dir, LOOP_KINDS[i % 2], args.rate, args.names, log))
        ring_events = [w.expect("ring", 60) for w in workers]
        rings = {e["pid"]: w for e, w in zip(ring_events, workers)}
        capacity = min(e["capacity"] for e in ring_events)
        deadline = time.monotonic() + 30
        while {r["pid"] for r in agent.status()["rings"] if r["alive"]} < set(rings):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the agent did not attach every worker's ring: {agent.status()}")
            time.sleep(0.05)
        for w in workers:
            w.proc.stdin.write("go\n")
            w.proc.stdin.flush()
        attached = [w.expect("attached", 30) for w in workers]
        print(f"soak: agent pid {agent.proc.pid}, {len(workers)} workers attached "
              f"({', '.join(f'{w.proc.pid}/{w.loop_kind}' for w in workers)}), {args.minutes:g} min", file=sys.stderr)

        t0 = time.monotonic()
        samples = [take_sample(agent, t0)]
        rows = []
        next_row = row_seconds
        while True:
            time.sleep(max(0.0, min(scrape_seconds, t0 + duration - time.monotonic())))
            for w in workers:
                if w.proc.poll() is not None:
                    raise RuntimeError(f"worker {w.proc.pid} exited with {w.proc.returncode}; log {w.log.name}")
            s = take_sample(agent, t0)
            samples.append(s)
            if s["t"] >= next_row - 0.5 or s["t"] >= duration:
                prev = rows[-1]["sample"] if rows else samples[0]
                in_row = [x for x in samples if prev["t"] < x["t"] <= s["t"]]
                dt = s["t"] - prev["t"]
                rows.append({"sample": s, "dt": dt,
                             "rate": (s["callbacks"] + s["dropped"] - prev["callbacks"] - prev["dropped"]) / dt,
                             "drops_in_row": s["dropped"] - prev["dropped"],
                             "backlog_max": max(x["backlog"] for x in in_row),
                             "cpu_pct": 100 * (s["cpu_s"] - prev["cpu_s"]) / dt,
                             "wait_ms": 1e3 * (s["wait_s"] - prev["wait_s"])})
                r = rows[-1]
                print(f"soak: t={s['t'] / 60:.2f} min rss={s['rss_kb'] / 1024:.1f} MB rate={r['rate']:,.0f}/s "
                      f"drained={s['drained']:,.0f} drops={s['dropped']:,.0f}", file=sys.stderr)
                next_row += row_seconds
            if s["t"] >= duration:
                break

        # Stop the workers cleanly; each reports its shim-side totals, then the agent's final drain.
        for w in workers:
            w.proc.send_signal(signal.SIGTERM)
        done = [w.expect("done", 30) for w in workers]
        deadline = time.monotonic() + 30
        while True:
            agent.get("/metrics")  # retirement waits for a scrape after the final drain
            status = agent.status()
            if status["agent"]["rings_mapped"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        final_text = agent.get("/metrics").decode()
        final_drained = status["agent"]["samples_drained"]
        final_rss = agent.memory_kb()
    except BaseException:
        print(f"soak: failed; agent and worker logs kept in {work}", file=sys.stderr)
        raise
    finally:
        for w in workers:
            w.kill()
        agent.close()
        shutil.rmtree(ring_dir, ignore_errors=True)

    shim_written = sum(d["samples_written"] for d in done)
    shim_dropped = sum(d["dropped"] for d in done)
    dropped_before_attach = sum(a["dropped"] for a in attached)
    agent_dropped = rows[-1]["sample"]["dropped"]
    retired = metric_sum(final_text, "loopwatch_agent_rings_retired_total")

    kinds = ", ".join(f"{sum(1 for w in workers if w.loop_kind == k)} {k}" for k in LOOP_KINDS)
    rate_text = f"{args.rate:,.0f} call_soon/s each (paced)" if args.rate > 0 else "full speed"
    print(f"\n## Soak: {args.minutes:g} min, {len(workers)} LOOPWATCH=1 workers ({kinds}), {rate_text}, "
          f"{args.names} callback names each, agent default flags, /metrics scraped every {scrape_seconds:g} s")
    print("| minute | agent RSS MB (VmRSS) | own MB (RssAnon+RssFile) | ring pages MB (RssShmem) | callbacks/s "
          "| samples drained | drops | named series | evictions | agent CPU % | agent run-queue wait ms (all threads) "
          "| backlog now / max seen in the row |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s = r["sample"]
        print(f"| {s['t'] / 60:.2f} | {s['rss_kb'] / 1024:.1f} | {s['own_kb'] / 1024:.1f} | {s['shmem_kb'] / 1024:.1f} "
              f"| {r['rate']:,.0f} "
              f"| {s['drained']:,.0f} | {s['dropped']:,.0f} | {s['named_series']} | {s['evictions']:,.0f} "
              f"| {r['cpu_pct']:.1f} | {r['wait_ms']:.0f} | {s['backlog']:,} / {r['backlog_max']:,} |")

    first, last = rows[0]["sample"], rows[-1]["sample"]
    growth = 100 * (last["rss_kb"] - first["rss_kb"]) / first["rss_kb"]
    own_growth = 100 * (last["own_kb"] - first["own_kb"]) / first["own_kb"]
    peak = max(r["sample"]["rss_kb"] for r in rows)
    total_rate = (last["callbacks"] + last["dropped"] - samples[0]["callbacks"] - samples[0]["dropped"]) / last["t"]
    balanced = final_drained == shim_written and agent_dropped == shim_dropped
    ok = ok and balanced
    print("\n### Summary")
    print(f"- callback rate: {total_rate:,.0f} callbacks/s on average over {last['t'] / 60:.1f} min "
          f"({total_rate / len(workers):,.0f} per worker)")
    print(f"- agent RSS: {first['rss_kb'] / 1024:.1f} MB at minute {first['t'] / 60:.2f}, "
          f"{last['rss_kb'] / 1024:.1f} MB at the end ({growth:+.1f} %; peak {peak / 1024:.1f} MB; "
          f"own pages {first['own_kb'] / 1024:.1f} -> {last['own_kb'] / 1024:.1f} MB, {own_growth:+.1f} %; "
          f"ring pages {first['shmem_kb'] / 1024:.1f} -> {last['shmem_kb'] / 1024:.1f} MB); "
          f"target flat within 5 %: {'met' if abs(growth) <= 5 else '**missed**'}")
    print(f"- accounting after the workers stopped: agent drained {final_drained:,} samples, the shims wrote "
          f"{shim_written:,}; agent drops {agent_dropped:,.0f}, shim drops {shim_dropped:,}: "
          f"{'exact' if balanced else '**does not balance**'}; rings retired {retired:.0f} of {len(workers)}, "
          f"agent RSS after retirement {final_rss['VmRSS'] / 1024:.1f} MB")
    steady = shim_dropped - dropped_before_attach
    print(f"- drops: {shim_dropped:,} in total = {dropped_before_attach:,} before the agent attached "
          f"+ {steady:,} while it ran")
    fill_ms = 1e3 * capacity / (total_rate / len(workers))
    print(f"  - a ring holds {capacity:,} samples: at {total_rate / len(workers):,.0f} callbacks/s per worker it fills "
          f"in {fill_ms:,.0f} ms, so a drop while the agent runs means it did not drain that ring for that long")
    if steady == 0:
        print("  - no drop while the agent ran: every ring was drained before it filled")
    for r in rows:
        if r["drops_in_row"] > 0:
            print(f"  - minute {r['sample']['t'] / 60:.2f}: {r['drops_in_row']:,.0f} drops (ring full); "
                  f"agent run-queue wait "
                  f"{r['wait_ms']:.0f} ms in that row, largest backlog seen {r['backlog_max']:,} samples")
    if ok:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"soak: the accounting does not balance; agent and worker logs kept in {work}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
