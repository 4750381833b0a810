#!/usr/bin/env bash
# Installs the dependencies, builds, and runs every test: the C++ unit tests (CTest), the Python shim
# tests, the end-to-end tests (agent + uvicorn with 2 workers + a real Prometheus) and the benchmarks'
# smoke run (bench/run.sh --quick: they complete and print every row; no timing asserted). This is the
# README's "Run all tests" command and what CI runs (.ci/run). A failed install or build stops it;
# every test suite runs, and any failure (a suite that collects nothing included) fails the script.
#
#   SKIP_INSTALL_DEPS=1  do not run scripts/install-deps.sh (for repeated local runs)
#   PYTEST_ARGS          extra arguments for pytest, e.g. PYTEST_ARGS="-x -k uvloop"
# shellcheck disable=SC2317  # summary runs from the EXIT trap
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
BUILD_DIR=${BUILD_DIR:-build}
export VENV BUILD_DIR

declare -a names=() results=()
record() { names+=("$1"); results+=("$2"); }

summary() {
  local rc=$?
  echo
  echo "==================== loopwatch test summary ===================="
  local i failed=0
  for i in "${!names[@]}"; do
    printf '  %-34s %s\n' "${names[$i]}" "${results[$i]}"
    [ "${results[$i]}" = PASS ] || failed=1
  done
  if [ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]; then
    echo "  ALL PASSED"
  else
    echo "  FAILED"
  fi
  echo "================================================================"
}
trap summary EXIT

# step NAME CMD...: runs one step and records PASS or FAIL (with the exit code).
step() {
  local name=$1; shift
  echo
  echo "==> $name: $*"
  local rc=0
  "$@" || rc=$?
  if [ "$rc" -eq 0 ]; then record "$name" PASS; else record "$name" "FAIL (exit $rc)"; fi
  return "$rc"
}

# Installing and building must succeed before anything is tested.
if [ "${SKIP_INSTALL_DEPS:-0}" != 1 ]; then
  step "install dependencies" bash scripts/install-deps.sh || exit 1
fi
step "build" bash scripts/build.sh || exit 1

# Every suite runs even when an earlier one failed, so one run reports all of them.
status=0
# CTest: --no-tests=error makes "no tests found" a failure, like pytest's exit code 5 below.
step "C++ tests (ctest)" ctest --test-dir "$BUILD_DIR" --output-on-failure --no-tests=error || status=1
# pytest exits 5 when it collects no tests: that is a failure here, as is any other non-zero code.
# shellcheck disable=SC2086  # PYTEST_ARGS is split on purpose
step "Python shim tests (pytest)" "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/python \
  ${PYTEST_ARGS:-} || status=1
# shellcheck disable=SC2086
step "end-to-end tests (pytest)" "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/e2e \
  ${PYTEST_ARGS:-} || status=1
# The benchmarks' smoke run (about 1 minute): each completes and prints every row. No timing is asserted.
step "benchmarks (bench/run.sh --quick)" bash bench/run.sh --quick || status=1
exit "$status"
