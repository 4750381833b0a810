// Turns a ring's ticks into the agent's time. CLOCK_MONOTONIC is one clock for every process on the
// host, so the header's calibration (tick_base <-> mono_base_ns, ns_per_tick) maps a tick to a
// monotonic time the agent can compare with its own steady_clock (CLOCK_MONOTONIC on Linux), and
// the agent's current realtime-minus-monotonic offset maps that to wall-clock time for reports.
#pragma once

#include <chrono>
#include <cstdint>

#include "loopwatch/header_check.h"

namespace loopwatch::agent {

class RingClock {
 public:
  explicit RingClock(const protocol::HeaderSnapshot& header)
      : tick_base_(header.clock_tick_base), mono_base_ns_(header.clock_mono_base_ns), ns_per_tick_(header.clock_ns_per_tick) {}

  // CLOCK_MONOTONIC nanoseconds of `ticks` (as a double: ticks before the base come out negative
  // relative to it, and a hostile calibration cannot overflow an integer).
  double MonoNs(uint64_t ticks) const {
    const double delta = ticks >= tick_base_ ? static_cast<double>(ticks - tick_base_) : -static_cast<double>(tick_base_ - ticks);
    return static_cast<double>(mono_base_ns_) + delta * ns_per_tick_;
  }

  static double MonoNs(std::chrono::steady_clock::time_point t) {
    return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
  }
  // Unix seconds of a CLOCK_MONOTONIC time, using the offset between the two clocks now.
  static double UnixSeconds(double mono_ns) {
    const double now_unix_ns = static_cast<double>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
    return (now_unix_ns - (MonoNs(std::chrono::steady_clock::now()) - mono_ns)) * 1e-9;
  }

 private:
  uint64_t tick_base_;
  uint64_t mono_base_ns_;
  double ns_per_tick_;
};

}  // namespace loopwatch::agent
