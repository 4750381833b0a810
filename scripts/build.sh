#!/usr/bin/env bash
# Builds loopwatch in place: the agent and the C++ tests with CMake into build/, and the Python shim
# into a venv at .venv (Debian's python3 with --system-site-packages, so it sees Debian's uvicorn,
# fastapi and uvloop: the matrix's debian-3.11 environment, which needs nothing from PyPI). The PyPI
# venvs are scripts/matrix.py's. Idempotent: a second run only rebuilds what changed and reinstalls
# the shim.
#
#   BUILD_DIR   CMake build directory      (default: build)
#   BUILD_TYPE  CMAKE_BUILD_TYPE           (default: RelWithDebInfo)
#   VENV        the venv the shim goes in  (default: .venv)
#   JOBS        parallel build jobs        (default: nproc)
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo}
VENV=${VENV:-.venv}
JOBS=${JOBS:-$(nproc)}
PYTHON=/usr/bin/python3   # Debian's interpreter: the python3 first on PATH may not see Debian packages

log() { printf '==> %s\n' "$*"; }

log "cmake configure ($BUILD_DIR, $BUILD_TYPE)"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" --log-level=WARNING >/dev/null

log "cmake build (-j$JOBS)"
cmake --build "$BUILD_DIR" -j"$JOBS"

if [ ! -x "$VENV/bin/python" ]; then
  log "create venv $VENV"
  "$PYTHON" -m venv --system-site-packages "$VENV"
fi

log "pip install ./shim into $VENV"
# --no-build-isolation --no-index: built with Debian's setuptools, offline (this environment must work
# where PyPI is unreachable; the PyPI venvs build with ordinary isolation).
# --force-reinstall --no-deps: pick up local changes to the shim on every run.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-index \
  --force-reinstall --no-deps ./shim

log "built: $BUILD_DIR/agent/loopwatch-agent, shim in $VENV"
