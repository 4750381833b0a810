// The clock helpers the hooks use. Sample ticks come from TickClock (TSC or CLOCK_MONOTONIC ns, see
// tick_clock.h); loop.time() values (asyncio: time.monotonic(); uvloop: libuv's monotonic clock) are
// CLOCK_MONOTONIC seconds and are converted with the process's calibration, which exists once any
// ring exists (ring creation finishes it), i.e. whenever a sample is being recorded.
#pragma once

#include <time.h>

#include <cstdint>

#include "tick_clock.h"

namespace loopwatch::shim {

inline uint64_t NowTicks() { return TickClock::Now(); }

inline uint64_t SecondsToNs(double seconds) { return seconds <= 0.0 ? 0 : static_cast<uint64_t>(seconds * 1e9); }

// Only while recording (a ring exists, so the calibration is final).
inline uint64_t MonoNsToTicks(uint64_t mono_ns) { return TickClock::Calibration().MonoNsToTicks(mono_ns); }

inline uint64_t UnixNowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace loopwatch::shim
