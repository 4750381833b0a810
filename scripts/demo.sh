#!/usr/bin/env bash
# The README's "Quick start": installs the dependencies, builds, then runs loopwatch-agent and the
# FastAPI demo app (uvicorn, 2 workers, LOOPWATCH=1) in the foreground until Ctrl-C. The app runs on
# today's PyPI stack (requirements/pypi-stack.txt: the newest uvicorn, uvloop, FastAPI) in the venv
# .venvs/debian-3.11-pypi, with the shim installed by pip from ./shim.
#
#   DEMO_LOOP=uvloop|asyncio   event loop of the app (default uvloop)
#   DEMO_HTTP=httptools|h11    HTTP parser of the app (default httptools)
#   DEMO_PORT=8000             port of the app
#   AGENT_ADDR=127.0.0.1:9477  listen address of the agent
#   LOOPWATCH_DIR              ring directory shared by app and agent (default /dev/shm/loopwatch)
#   DEMO_VENV                  the venv the app runs in (default .venvs/debian-3.11-pypi)
#   SKIP_INSTALL_DEPS=1        do not run scripts/install-deps.sh
# shellcheck disable=SC2317  # functions below are called from traps
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_LOOP=${DEMO_LOOP:-uvloop}
DEMO_HTTP=${DEMO_HTTP:-httptools}
DEMO_PORT=${DEMO_PORT:-8000}
AGENT_ADDR=${AGENT_ADDR:-127.0.0.1:9477}
export LOOPWATCH_DIR=${LOOPWATCH_DIR:-/dev/shm/loopwatch}
DEMO_VENV=${DEMO_VENV:-.venvs/debian-3.11-pypi}
BUILD_DIR=${BUILD_DIR:-build}
AGENT=$BUILD_DIR/agent/loopwatch-agent
APP_URL=http://127.0.0.1:$DEMO_PORT
AGENT_URL=http://$AGENT_ADDR

case "$DEMO_LOOP" in asyncio|uvloop) ;; *) echo "DEMO_LOOP must be asyncio or uvloop" >&2; exit 2 ;; esac

if [ "${SKIP_INSTALL_DEPS:-0}" != 1 ]; then
  bash scripts/install-deps.sh
fi
bash scripts/build.sh
python3 scripts/matrix.py setup debian-3.11-pypi   # the PyPI venv, with the shim from ./shim

LOGS=$(mktemp -d /tmp/loopwatch-demo.XXXXXX)
mkdir -p "$LOOPWATCH_DIR"
agent_pid="" app_pid=""

# Stops one process group politely, then firmly.
stop() {
  local pid=$1 name=$2
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || { echo "stopped $name"; return 0; }; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  echo "killed $name"
}
cleanup() {
  trap - EXIT INT TERM
  echo
  stop "$app_pid" "demo app"      # the app first: the agent drains the rings of exiting workers
  sleep 0.2
  stop "$agent_pid" "loopwatch-agent"
  echo "logs kept in $LOGS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() {  # PID URL TIMEOUT_S NAME LOG: waits until URL answers while PID is alive
  local deadline=$((SECONDS + $3))
  until curl -fsS -o /dev/null --max-time 1 "$2" 2>/dev/null; do
    if ! kill -0 "$1" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      echo "$4 did not come up on $2 (port taken? see below); its log ($5):" >&2
      tail -n 40 "$5" >&2
      exit 1
    fi
    sleep 0.2
  done
  kill -0 "$1" 2>/dev/null || { echo "$4 exited; something else answers on $2" >&2; tail -n 40 "$5" >&2; exit 1; }
}

# setsid: each runs in its own process group, so Ctrl-C and cleanup reach the uvicorn workers too.
setsid "$AGENT" --web.listen-address "$AGENT_ADDR" --ring.dir "$LOOPWATCH_DIR" >"$LOGS/agent.log" 2>&1 &
agent_pid=$!
wait_http "$agent_pid" "$AGENT_URL/metrics" 15 loopwatch-agent "$LOGS/agent.log"

LOOPWATCH=1 LOOPWATCH_SERVICE=${LOOPWATCH_SERVICE:-demo} setsid "$DEMO_VENV/bin/python" -m uvicorn examples.demo_app:app \
  --workers 2 --host 127.0.0.1 --port "$DEMO_PORT" --loop "$DEMO_LOOP" --http "$DEMO_HTTP" \
  >"$LOGS/app.log" 2>&1 &
app_pid=$!
wait_http "$app_pid" "$APP_URL/" 30 "demo app" "$LOGS/app.log"

# A little traffic so every kind of series has data on the first look.
traffic=()
get() { curl -fsS -o /dev/null --max-time 10 "$APP_URL$1" & traffic+=($!); }
for _ in $(seq 20); do get /; done
for _ in $(seq 4); do get "/sleep?ms=50"; done
get "/fanout?n=200"
get "/spin?ms=50"
get "/block?ms=250"
for pid in "${traffic[@]}"; do wait "$pid" || echo "warning: a warm-up request failed" >&2; done
sleep 0.5   # one drain interval and then some

row() { printf '  %-8s%-40s %s\n' "$1" "$2" "${3:-}"; }
echo
echo "loopwatch demo is running ($DEMO_LOOP + $DEMO_HTTP, 2 workers, ring dir $LOOPWATCH_DIR)"
echo
row agent "$AGENT_URL/" "live page: every worker's lag, rate, in-flight callback (open in a browser)"
row ""    "$AGENT_URL/metrics" "Prometheus metrics (loopwatch_*)"
row ""    "$AGENT_URL/api/status" "JSON: the rings the agent reads"
row app   "$APP_URL/" "hello"
row ""    "$APP_URL/block?ms=200" "blocks the loop with time.sleep: the stall to catch"
row ""    "$APP_URL/sleep?ms=50" "awaits asyncio.sleep: healthy"
row ""    "$APP_URL/spin?ms=100" "busy loop on the event loop"
row ""    "$APP_URL/fanout?n=100" "gathers n small tasks"
row ""    "$APP_URL/pid" "which worker answered"
echo
row try:  "curl '$APP_URL/block?ms=300'; curl -s $AGENT_URL/metrics | grep run_asgi"
row load: "wrk -t1 -c16 -d10s $APP_URL/"
row logs: "$LOGS/agent.log $LOGS/app.log"
echo
echo "Ctrl-C stops the app and the agent."

# Stay in the foreground; leave if either process dies on its own.
while kill -0 "$agent_pid" 2>/dev/null && kill -0 "$app_pid" 2>/dev/null; do
  sleep 1
done
echo "a process exited on its own; see $LOGS" >&2
exit 1
