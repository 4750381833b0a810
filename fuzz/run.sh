#!/usr/bin/env bash
# Builds the libFuzzer target with clang (in build-fuzz, every target under fuzzer coverage + ASan +
# UBSan) and fuzzes the agent's decoder of ring files for SECONDS, starting from the committed seeds
# in fuzz/corpus. Exits non-zero on any crash, sanitizer report, leak, timeout or broken invariant;
# the input that did it is saved in build-fuzz/artifacts/ (reproduce: see fuzz/README.md).
#
#   bash fuzz/run.sh          60 s: what CI runs (scripts/test.sh)
#   bash fuzz/run.sh 3600     a longer run
#
#   FUZZ_BUILD_DIR  build directory                (default: build-fuzz)
#   JOBS            parallel build jobs            (default: nproc)
#   FUZZ_ARGS       extra libFuzzer flags, e.g. FUZZ_ARGS="-jobs=2 -workers=2"
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_TO_RUN=${1:-60}
BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
JOBS=${JOBS:-$(nproc)}

if ! command -v clang++ >/dev/null; then
  echo "fuzz/run.sh: clang++ not found (scripts/install-deps.sh installs clang and libclang-rt-14-dev)" >&2
  exit 1
fi

echo "==> configure $BUILD_DIR (clang, fuzzer-no-link,address,undefined)"
CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DLOOPWATCH_SANITIZE=fuzzer-no-link,address,undefined -DLOOPWATCH_BUILD_TESTS=OFF -DLOOPWATCH_BUILD_BENCH=OFF \
  --log-level=WARNING >/dev/null
echo "==> build ring_decoder_fuzzer (-j$JOBS)"
cmake --build "$BUILD_DIR" --target ring_decoder_fuzzer -j"$JOBS"

# New inputs go into the first directory, which persists between local runs; the committed seeds
# are only read.
work="$BUILD_DIR/fuzz-corpus"
artifacts="$BUILD_DIR/artifacts"
mkdir -p "$work" "$artifacts"
echo "==> fuzz for ${SECONDS_TO_RUN}s"
# -max_len: the seeds are 1-10 KiB; 16 KiB leaves room for larger rings and name tables.
# -timeout: one input running 10 s is a hang (a drain loop that never ends), not a slow machine.
# A 16 MB quarantine (default 256) still outlives every input's allocations and runs 1.5x faster.
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=16}
# shellcheck disable=SC2086  # FUZZ_ARGS is split on purpose
"$BUILD_DIR/fuzz/ring_decoder_fuzzer" -max_total_time="$SECONDS_TO_RUN" -dict=fuzz/ring.dict -max_len=16384 \
  -timeout=10 -print_final_stats=1 -artifact_prefix="$artifacts/" ${FUZZ_ARGS:-} "$work" fuzz/corpus
