"""Per-callback cost of loopwatch, side by side with a bare loop and with a pure-Python wrapper (the
technique today's Python monitors use), on asyncio and uvloop.

  python bench/callback_overhead.py            # full run (a few minutes)
  python bench/callback_overhead.py --quick    # CI smoke run: every row, small N, 1 round

Method: every measurement is a fresh interpreter (workloads.py); rounds interleave the configurations
in a shuffled order so drift on a shared machine hits all of them alike; the figure is the median of
CPU time per callback. Callgrind instruction counts (exactly repeatable) for call_soon and task: the
difference between runs of N1 and N2 callbacks divided by N2 - N1, so interpreter start-up cancels.
While loopwatch runs, the agent drains the rings, as in production. Prints ratios, never asserts.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKLOADS = ["call_soon", "task", "timer", "echo"]
LOOPS = ["asyncio", "uvloop"]
CONFIGS = ["bare", "loopwatch", "python-wrapper"]
CALLGRIND_WORKLOADS = ["call_soon", "task"]


def python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def clean_env(ring_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPWATCH")}
    env["LOOPWATCH_DIR"] = ring_dir
    return env


def run_once(config: str, loop: str, workload: str, n: int, ring_dir: str) -> dict:
    out = subprocess.run([python(), str(HERE / "workloads.py"), config, loop, workload, str(n)], env=clean_env(ring_dir),
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{config} {loop} {workload} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def callgrind_instructions(config: str, loop: str, workload: str, n: int, ring_dir: str) -> int:
    env = clean_env(ring_dir)
    env["PYTHONHASHSEED"] = "0"  # dict layouts, hence instruction counts, repeat exactly
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python(),
                          str(HERE / "workloads.py"), config, loop, workload, str(n)],
                         env=env, capture_output=True, text=True, timeout=1200)
    match = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or match is None:
        raise RuntimeError(f"callgrind {config} {loop} {workload} failed:\n{out.stderr[-2000:]}")
    return int(match.group(1))


class Agent:
    """loopwatch-agent draining `ring_dir` for the duration of the benchmark."""

    def __init__(self, ring_dir: str):
        binary = ROOT / "build" / "agent" / "loopwatch-agent"
        self.proc = None
        if binary.exists():
            self.proc = subprocess.Popen([str(binary), "--ring.dir", ring_dir, "--web.listen-address", "127.0.0.1:0",
                                          "--log.level", "warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3)

    def close(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def fmt_ns(seconds: float) -> str:
    return f"{seconds * 1e9:8.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run for CI: small N, one round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("-n", type=int, default=200_000, help="callbacks per run (echo: round trips / 10)")
    parser.add_argument("--no-callgrind", action="store_true")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset")
    parser.add_argument("--loops", default=",".join(LOOPS), help="comma-separated subset")
    args = parser.parse_args()
    workloads = [w for w in args.workloads.split(",") if w in WORKLOADS]
    loops = [lp for lp in args.loops.split(",") if lp in LOOPS]
    rounds, n = (1, 2_000) if args.quick else (args.rounds, args.n)
    callgrind = shutil.which("valgrind") is not None and not args.no_callgrind

    ring_dir = tempfile.mkdtemp(prefix="lw-bench-")
    agent = Agent(ring_dir)
    cpu: dict[tuple[str, str, str], list[float]] = {}
    try:
        cases = [(w, lp) for w in workloads for lp in loops]
        for r in range(rounds):
            for workload, loop in cases:
                configs = CONFIGS[:]
                random.shuffle(configs)
                for config in configs:
                    count = n // 10 if workload == "echo" else n
                    result = run_once(config, loop, workload, count, ring_dir)
                    cpu.setdefault((config, loop, workload), []).append(result["cpu"] / result["callbacks"])
            print(f"round {r + 1}/{rounds} done", file=sys.stderr)
    finally:
        agent.close()

    print(f"\n## Per-callback CPU time, median of {rounds} interleaved rounds (ns per callback; echo: per round trip)")
    print("| workload | loop | bare | loopwatch | python-wrapper | loopwatch - bare | wrapper - bare | wrapper/loopwatch overhead |")
    print("|---|---|---|---|---|---|---|---|")
    for workload in workloads:
        for loop in loops:
            med = {c: statistics.median(cpu[(c, loop, workload)]) for c in CONFIGS}
            lw = med["loopwatch"] - med["bare"]
            wrap = med["python-wrapper"] - med["bare"]
            ratio = f"{wrap / lw:.1f}x" if lw > 0 else "loopwatch faster than bare"
            print(f"| {workload} | {loop} | {fmt_ns(med['bare'])} | {fmt_ns(med['loopwatch'])} | {fmt_ns(med['python-wrapper'])} "
                  f"| {lw * 1e9:+.0f} | {wrap * 1e9:+.0f} | {ratio} |")

    if callgrind:
        # Quick: tiny N (start-up dominates each run, and cancels in the difference); every row prints.
        n1, n2 = (200, 600) if args.quick else (5_000, 25_000)
        print(f"\n## Callgrind instructions per callback ((Ir(N={n2}) - Ir(N={n1})) / {n2 - n1}; exact, repeatable)")
        print("| workload | loop | bare | loopwatch | python-wrapper | loopwatch - bare | wrapper - bare |")
        print("|---|---|---|---|---|---|---|")
        for workload in [w for w in CALLGRIND_WORKLOADS if w in workloads]:
            for loop in loops:
                per = {}
                for config in CONFIGS:
                    low = callgrind_instructions(config, loop, workload, n1, ring_dir)
                    high = callgrind_instructions(config, loop, workload, n2, ring_dir)
                    per[config] = (high - low) / (n2 - n1)
                print(f"| {workload} | {loop} | {per['bare']:.0f} | {per['loopwatch']:.0f} | {per['python-wrapper']:.0f} "
                      f"| {per['loopwatch'] - per['bare']:+.0f} | {per['python-wrapper'] - per['bare']:+.0f} |")
    else:
        print("\n(callgrind skipped: valgrind not found or --no-callgrind)")
    shutil.rmtree(ring_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
