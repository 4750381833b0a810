#!/usr/bin/env bash
# Installs everything loopwatch builds, runs and tests with from Debian's archive: the toolchain, the
# C++ libraries, Debian's Python stack (the matrix's debian-3.11 environment) and the test servers.
# The PyPI stack comes later, into venvs (scripts/matrix.py setup). Idempotent: a machine that
# already has the packages only pays for `apt-get update`.
set -euo pipefail

packages=(
  # C++ toolchain and libraries (agent, shim extension, tests, benchmarks)
  build-essential cmake pkg-config git ca-certificates
  prometheus-cpp-dev libcivetweb-dev libboost-dev nlohmann-json3-dev libcli11-dev libspdlog-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # clang: the libFuzzer target (fuzz/run.sh) and the ThreadSanitizer build; libclang-rt has libFuzzer
  clang libclang-rt-14-dev
  # Debian's Python 3.11 and the service stack loopwatch instruments
  python3 python3-dev python3-venv python3-pip python3-setuptools python3-wheel
  python3-uvloop python3-uvicorn python3-fastapi python3-httptools python3-h11
  # the servers of the e2e matrix (tests/e2e/servers.py); Debian's hypercorn 0.13 is left out: it
  # closes every connection after one response, without loopwatch too, so a test cannot keep a
  # connection to a chosen worker. hypercorn is tested from PyPI (requirements/).
  python3-gunicorn python3-aiohttp
  python3-pytest python3-httpx python3-requests
  # integration: a real Prometheus (+ promtool), load generation, process tools
  prometheus wrk curl procps valgrind
  # shipped deployment files: compose validation (docker-compose config), YAML checks, and headless
  # Chromium for the agent's live page
  docker-compose python3-yaml chromium fonts-dejavu-core
)
# npm installs the Dockerfile linter (scripts/install-node-tools.sh). A machine that already has a
# Node.js with its own npm (e.g. NodeSource's, which conflicts with Debian's npm) keeps it.
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (it calls apt-get)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# --no-install-recommends keeps the fresh machine small; prometheus' recommended web assets are not needed.
apt-get install -y -q --no-install-recommends "${packages[@]}"
