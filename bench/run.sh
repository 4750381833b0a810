#!/usr/bin/env bash
# Runs every loopwatch benchmark in order and prints their tables (markdown): per-callback overhead,
# uvicorn req/s, the agent's drain, scrape, memory and drop figures, and how soon a slow callback's
# first stack sample follows the arm threshold. It builds nothing: it uses
# build/ and .venv as scripts/build.sh left them.
#
#   bash bench/run.sh           full run (about 15 minutes on 2 cores)
#   bash bench/run.sh --quick   CI smoke run (about 1 minute): every benchmark in its short mode
#                               (callback_overhead without callgrind); exits non-zero if one fails or
#                               prints fewer table rows than it should. Never a timed assertion.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
case "${1:-}" in
  --quick) quick=1 ;;
  "") ;;
  *) echo "usage: bash bench/run.sh [--quick]" >&2; exit 2 ;;
esac

py=.venv/bin/python
for need in "$py" build/agent/loopwatch-agent build/bench/synthetic_writer; do
  if [ ! -x "$need" ]; then
    echo "bench/run.sh: $need is missing: run 'bash scripts/build.sh' first" >&2
    exit 1
  fi
done
if ! command -v wrk >/dev/null; then
  echo "bench/run.sh: wrk is missing: run 'bash scripts/install-deps.sh' first" >&2
  exit 1
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
failed=0

# bench NAME MIN_ROWS CMD...: runs one benchmark, shows its output, and checks that it exited 0 and
# printed at least MIN_ROWS data rows (table lines other than headers and |---| separators).
bench() {
  local name=$1 min_rows=$2; shift 2
  echo
  echo "==> $name: $*"
  local rc=0
  "$@" | tee "$out" || rc=$?
  local rows
  rows=$(awk '/^\|/ { if ($0 ~ /^\|---/) headers++; else pipes++ } END { print pipes - headers }' "$out")
  if [ "$rc" -ne 0 ] || [ "$rows" -lt "$min_rows" ]; then
    echo "bench/run.sh: $name FAILED (exit $rc, $rows of $min_rows table rows)" >&2
    failed=1
  fi
}

callgrind_rows=0
if command -v valgrind >/dev/null; then callgrind_rows=4; fi
if [ "$quick" = 1 ]; then
  bench "per-callback overhead" $((8 + callgrind_rows)) "$py" bench/callback_overhead.py --quick
  bench "uvicorn throughput" 2 "$py" bench/uvicorn_throughput.py --quick
  bench "agent throughput" 15 "$py" bench/agent_throughput.py --quick
  bench "sampling delay" 4 "$py" bench/sampling_delay.py --quick
else
  bench "per-callback overhead" $((8 + callgrind_rows)) "$py" bench/callback_overhead.py
  bench "uvicorn throughput" 2 "$py" bench/uvicorn_throughput.py
  bench "agent throughput" 15 "$py" bench/agent_throughput.py
  bench "sampling delay" 4 "$py" bench/sampling_delay.py
fi

echo
if [ "$failed" -ne 0 ]; then
  echo "bench/run.sh: some benchmarks FAILED" >&2
  exit 1
fi
echo "bench/run.sh: all benchmarks completed"
