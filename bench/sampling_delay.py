"""How soon a slow callback's first stack sample follows the arm threshold (issue 13), on asyncio and
uvloop, for a callback that sleeps in a syscall (time.sleep: the GIL is free) and one that spins in
pure Python (the watchdog waits for the loop thread to hand the GIL over, up to the 5 ms switch
interval).

  python bench/sampling_delay.py            # 40 callbacks per row
  python bench/sampling_delay.py --quick    # CI smoke run: 8 per row

Method: the real agent (--slow.event-threshold 100 ms, so every one of these callbacks becomes an
/api/slow event carrying its `sampling_delay_seconds`) and one Python process per loop with
LOOPWATCH=1 that runs N callbacks of 150 ms of each kind, 60 ms apart. The agent's watch tick is
--slow.watch-interval (10 ms), so the delay is that tick's phase (0-10 ms, uniform), plus the futex
wake of the watchdog thread, plus the GIL hand-over. Prints the distribution; asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from agent_process import AgentProcess  # noqa: E402

WORKLOAD = r"""
import asyncio, sys, time
kind, n = sys.argv[1], int(sys.argv[2])
if kind == "uvloop":
    import uvloop
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

def sleeping():
    time.sleep(0.15)

def spinning():
    deadline = time.perf_counter() + 0.15
    while time.perf_counter() < deadline: pass

async def main():
    await asyncio.sleep(1.0)  # the agent maps the ring
    loop = asyncio.get_running_loop()
    for _ in range(n):
        for callback in (sleeping, spinning):
            loop.call_soon(callback)
            await asyncio.sleep(0.06)
    await asyncio.sleep(0.5)

asyncio.run(main())
"""


def python() -> str:
    venv = HERE.parent / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("-n", type=int, default=40, help="callbacks of each kind per loop")
    args = parser.parse_args()
    n = 8 if args.quick else args.n
    work = tempfile.mkdtemp(prefix="lw-bench-delay-")
    ring_dir = os.path.join(work, "rings")
    os.makedirs(ring_dir)
    agent = AgentProcess(ring_dir, os.path.join(work, "agent.log"), "--slow.event-threshold", "100",
                         "--slow.keep", "10000")
    rows = []
    try:
        for loop in ("asyncio", "uvloop"):
            env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPWATCH")}
            env.update(LOOPWATCH="1", LOOPWATCH_DIR=ring_dir, LOOPWATCH_SERVICE=f"delay-{loop}")
            subprocess.run([python(), "-c", WORKLOAD, loop, str(n)], env=env, check=True, timeout=300)
            time.sleep(0.5)  # the last events drained
            events = json.loads(agent.get("/api/slow"))["events"]
            for kind in ("sleeping", "spinning"):
                delays = [e["sampling_delay_seconds"] * 1000 for e in events
                          if e["service"] == f"delay-{loop}" and e["callback"].endswith(kind) and "samples" in e]
                rows.append((loop, kind, len([e for e in events if e["service"] == f"delay-{loop}"
                                              and e["callback"].endswith(kind)]), delays))
    finally:
        agent.close()
    print("\n## Delay from the arm threshold (50 ms) to the first stack sample, ms")
    print("| loop | callback | callbacks | sampled | median | p90 | max |")
    print("|---|---|---|---|---|---|---|")
    for loop, kind, total, delays in rows:
        if delays:
            print(f"| {loop} | {kind} | {total} | {len(delays)} | {statistics.median(delays):.1f} "
                  f"| {quantile(delays, 0.9):.1f} | {max(delays):.1f} |")
        else:
            print(f"| {loop} | {kind} | {total} | 0 | - | - | - |")
    return 0 if all(delays for *_, delays in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
