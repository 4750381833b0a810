#!/usr/bin/env bash
# Installs the dependencies, builds, and runs every test: the C++ unit tests (CTest), the same C++
# suite again under ASan + UBSan (build-asan), the two-thread ring stress test under ThreadSanitizer
# (build-tsan, clang), a 60 s libFuzzer run of the agent's ring decoder (fuzz/run.sh, build-fuzz), the
# Python side on every interpreter present (scripts/matrix.py: Debian's 3.11 with Debian's packages,
# Debian's 3.11 and pyenv's CPython 3.10-3.13 with the newest PyPI releases; per interpreter the shim
# tests on asyncio and uvloop, the servers end to end, and the wheel), the end-to-end tests (agent +
# uvicorn with 2 workers + a real Prometheus: metrics, faults, stalls, every dashboard panel and alert
# rule query, the live page in headless Chromium, every server) on Debian's stack and on the newest
# CPython, the deployment files (docker-compose config, dockerfilelint, compose and Kubernetes
# invariants) and the benchmarks' smoke run (bench/run.sh --quick: they complete and print every row;
# no timing asserted). It ends with the runtime matrix: Python x loop x server, PASS / FAIL / SKIP
# with the reason. This is the README's "Run all tests" command and what CI runs (.ci/run). A failed
# install or build stops it; every test suite runs (a sanitizer build that fails counts as its suite
# failing), and any failure (a suite that collects nothing included) fails the script. An
# interpreter the machine lacks is a SKIP, never a pass.
#
#   SKIP_INSTALL_DEPS=1  do not run scripts/install-deps.sh and install-node-tools.sh (repeated local runs)
#   PYTEST_ARGS          extra arguments for pytest, e.g. PYTEST_ARGS="-x -k uvloop"
#   MATRIX_ENVS          the PyPI environments to test (default: all that scripts/matrix.py knows)
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
    printf '  %-44s %s\n' "${names[$i]}" "${results[$i]}"
    case "${results[$i]}" in PASS | SKIP*) ;; *) failed=1 ;; esac
  done
  echo
  python3 scripts/matrix.py print || failed=1
  echo
  if [ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]; then
    echo "  ALL PASSED"
  else
    echo "  FAILED"
  fi
  echo "================================================================"
}
trap summary EXIT

# step NAME CMD...: runs one step and records PASS, FAIL (with the exit code) or, for exit 77 (an
# interpreter this machine does not have: scripts/matrix.py), SKIP; the matrix says why.
step() {
  local name=$1; shift
  echo
  echo "==> $name: $*"
  local rc=0
  "$@" || rc=$?
  if [ "$rc" -eq 0 ]; then record "$name" PASS
  elif [ "$rc" -eq 77 ]; then record "$name" "SKIP (see the matrix)"; rc=0
  else record "$name" "FAIL (exit $rc)"; fi
  return "$rc"
}

JOBS=${JOBS:-$(nproc)}

# Debug keeps the build short; only the test executables are built, because an instrumented Python
# extension cannot be loaded into Debian's uninstrumented python3. handle_sigbus=0: the agent's own
# SIGBUS guard is under test, and a fault it does not own must kill the process as it would without ASan.
asan_tests() {
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLOOPWATCH_SANITIZE=address,undefined \
    -DLOOPWATCH_BUILD_BENCH=OFF --log-level=WARNING >/dev/null &&
    cmake --build build-asan --target loopwatch_cpp_tests -j"$JOBS" &&
    ASAN_OPTIONS=handle_sigbus=0 UBSAN_OPTIONS=print_stacktrace=1 \
      ctest --test-dir build-asan -j"$JOBS" --output-on-failure --no-tests=error
}

# clang, not gcc: gcc 12 turns the ring's 32-byte memcpy into vector moves its TSan pass does not
# instrument, and a write_pos store weakened to relaxed went unreported; clang's TSan reports it.
tsan_stress() {
  CC=clang CXX=clang++ cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOOPWATCH_SANITIZE=thread \
    -DLOOPWATCH_BUILD_BENCH=OFF --log-level=WARNING >/dev/null &&
    cmake --build build-tsan --target ring_stress_test -j"$JOBS" &&
    ctest --test-dir build-tsan -R '^RingStressTest[.]' --output-on-failure --no-tests=error
}

# Installing and building must succeed before anything is tested.
if [ "${SKIP_INSTALL_DEPS:-0}" != 1 ]; then
  step "install dependencies" bash -c 'bash scripts/install-deps.sh && bash scripts/install-node-tools.sh' || exit 1
fi
step "build" bash scripts/build.sh || exit 1

# Every suite runs even when an earlier one failed, so one run reports all of them.
status=0
# CTest: --no-tests=error makes "no tests found" a failure, like pytest's exit code 5 below.
step "C++ tests (ctest)" ctest --test-dir "$BUILD_DIR" --output-on-failure --no-tests=error || status=1
# The whole C++ suite again with ASan + UBSan in every target (the agent core included); see asan_tests.
step "C++ tests under ASan+UBSan" asan_tests || status=1
# The two-thread ring stress test under ThreadSanitizer: a missing release/acquire pair is a reported race.
step "ring stress under TSan" tsan_stress || status=1
# libFuzzer on hostile ring files through the agent's decoder, metrics and exposition (fuzz/README.md).
step "fuzz ring decoder (60 s)" bash fuzz/run.sh 60 || status=1
# pytest exits 5 when it collects no tests: that is a failure here, as is any other non-zero code.
# Debian's 3.11 with Debian's packages (the venv scripts/build.sh made).
# shellcheck disable=SC2086  # PYTEST_ARGS is split on purpose
step "Python shim tests (debian-3.11)" python3 scripts/matrix.py run debian-3.11 python ${PYTEST_ARGS:-} || status=1
# shellcheck disable=SC2086
step "end-to-end tests (debian-3.11)" python3 scripts/matrix.py run debian-3.11 e2e ${PYTEST_ARGS:-} || status=1
# shellcheck disable=SC2086
step "deployment files (pytest)" "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/deploy \
  ${PYTEST_ARGS:-} || status=1
# The PyPI stack on every interpreter present: venvs from requirements/pypi-stack.txt, the shim by
# `pip install ./shim` with build isolation; then per interpreter the shim tests, the servers and the
# wheel, and the whole end-to-end suite on the newest CPython (it includes the servers).
newest=$(python3 scripts/matrix.py newest)
for env in ${MATRIX_ENVS:-debian-3.11-pypi cpython-3.10 cpython-3.11 cpython-3.12 cpython-3.13}; do
  if ! step "PyPI venv ($env)" python3 scripts/matrix.py setup "$env"; then
    status=1
    continue
  fi
  # shellcheck disable=SC2086
  step "shim tests ($env)" python3 scripts/matrix.py run "$env" python ${PYTEST_ARGS:-} || status=1
  if [ "$env" != "$newest" ]; then
    # shellcheck disable=SC2086
    step "servers ($env)" python3 scripts/matrix.py run "$env" servers ${PYTEST_ARGS:-} || status=1
  fi
  step "wheel ($env)" python3 scripts/matrix.py run "$env" wheel || status=1
done
# shellcheck disable=SC2086
step "end-to-end tests ($newest)" python3 scripts/matrix.py run "$newest" e2e ${PYTEST_ARGS:-} || status=1
# The benchmarks' smoke run (about 1 minute): each completes and prints every row. No timing is asserted.
step "benchmarks (bench/run.sh --quick)" bash bench/run.sh --quick || status=1
exit "$status"
