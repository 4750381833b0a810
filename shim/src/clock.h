// The shim's clock: what every sample's ticks mean. Version 1 ticks are CLOCK_MONOTONIC nanoseconds
// (ClockKind::kMonotonicNs), the same clock as asyncio's loop.time() and uvloop's libuv time, so a
// TimerHandle's due time converts to ticks without calibration. (The TSC clock of DESIGN.md arrives
// with the hot-path work; the header already carries the calibration fields it needs.)
#pragma once

#include <time.h>

#include <cstdint>

namespace loopwatch::shim {

inline uint64_t NowTicks() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// loop.time() seconds (asyncio: time.monotonic(); uvloop: libuv's monotonic ms) -> ticks.
inline uint64_t LoopSecondsToTicks(double seconds) {
  return seconds <= 0.0 ? 0 : static_cast<uint64_t>(seconds * 1e9);
}

inline uint64_t UnixNowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace loopwatch::shim
