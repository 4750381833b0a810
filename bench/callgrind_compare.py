"""Callgrind instructions per callback, loopwatch minus bare, of two shim builds side by side (e.g.
the commit before a change and the working tree): each build is a Python with that shim installed.

  python bench/callgrind_compare.py BEFORE_PYTHON AFTER_PYTHON

  # e.g. the shim of commit C in a throw-away venv next to the tree's own .venv:
  git worktree add /tmp/before C && python3 -m venv --system-site-packages /tmp/venv-before &&
  /tmp/venv-before/bin/pip install --no-build-isolation --no-index --no-deps /tmp/before/shim &&
  python3 bench/callgrind_compare.py /tmp/venv-before/bin/python .venv/bin/python

Counts are exact and repeatable (callback_overhead.callgrind_instructions: PYTHONHASHSEED=0, the
difference of two run lengths, so start-up cancels). Echo is per TCP round trip.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import callback_overhead  # noqa: E402

N1, N2 = 5_000, 25_000


def per_callback(python: str, config: str, loop: str, workload: str, ring_dir: str) -> float:
    callback_overhead.python = lambda: python  # the build under test
    a, b = (N1 // 10, N2 // 10) if workload == "echo" else (N1, N2)
    low = callback_overhead.callgrind_instructions(config, loop, workload, a, ring_dir)
    high = callback_overhead.callgrind_instructions(config, loop, workload, b, ring_dir)
    return (high - low) / (b - a)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("callgrind_compare: valgrind not found", file=sys.stderr)
        return 1
    ring_dir = tempfile.mkdtemp(prefix="lw-cg-")
    print("| workload | loop | before: loopwatch - bare | after: loopwatch - bare | change |")
    print("|---|---|---|---|---|")
    for workload in ("call_soon", "task", "echo"):
        for loop in ("asyncio", "uvloop"):
            added = [per_callback(py, "loopwatch", loop, workload, ring_dir) - per_callback(py, "bare", loop, workload, ring_dir)
                     for py in (args.before, args.after)]
            print(f"| {workload} | {loop} | {added[0]:+.0f} | {added[1]:+.0f} | {added[1] - added[0]:+.0f} |", flush=True)
    shutil.rmtree(ring_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
