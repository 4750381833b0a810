// The shim's per-callback clock (DESIGN.md, "Clock"): the TSC when the CPU says it is invariant
// (constant_tsc and nonstop_tsc), CLOCK_MONOTONIC nanoseconds otherwise. The TSC costs two rdtsc
// reads per callback instead of two vDSO clock_gettime calls. Ticks are converted to nanoseconds by
// the agent with the calibration written into every ring header (TickCalibration), so the hot path
// never multiplies. Free of Python so the C++ tests can drive it.
#pragma once

#include <cstdint>
#include <string_view>

#include "loopwatch/layout.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define LOOPWATCH_HAVE_TSC 1
#else
#define LOOPWATCH_HAVE_TSC 0
#endif

namespace loopwatch::shim {

// ns(CLOCK_MONOTONIC) = mono_base_ns + (ticks - tick_base) * ns_per_tick
struct TickCalibration {
  protocol::ClockKind kind = protocol::ClockKind::kMonotonicNs;
  uint64_t tick_base = 0;
  uint64_t mono_base_ns = 0;
  double ns_per_tick = 1.0;

  double TicksToNs(uint64_t ticks) const {
    return static_cast<double>(mono_base_ns) + (static_cast<double>(ticks) - static_cast<double>(tick_base)) * ns_per_tick;
  }
  uint64_t MonoNsToTicks(uint64_t mono_ns) const {
    const double ticks = static_cast<double>(tick_base) + (static_cast<double>(mono_ns) - static_cast<double>(mono_base_ns)) / ns_per_tick;
    return ticks <= 0 ? 0 : static_cast<uint64_t>(ticks);
  }
};

// True when the flags line of /proc/cpuinfo lists both constant_tsc and nonstop_tsc.
bool TscIsInvariant(std::string_view cpuinfo_flags);
// The flags line of /proc/cpuinfo ("" if unreadable).
std::string CpuInfoFlags();

uint64_t MonotonicNs();

// Measures the TSC against CLOCK_MONOTONIC over at least `min_interval_ns` (sleeping, not spinning,
// for whatever part of the interval has not yet passed since `start`). Each clock pair is read as
// rdtsc / clock_gettime / rdtsc and kept only when the two rdtsc reads are close.
struct TscPair {
  uint64_t tsc = 0;
  uint64_t mono_ns = 0;
};
TscPair ReadTscPair();
TickCalibration CalibrateTsc(const TscPair& start, uint64_t min_interval_ns);

// The process's clock: chosen once (from the CPU flags, or forced by LOOPWATCH_CLOCK=monotonic).
class TickClock {
 public:
  // Chooses the kind now, from the flags line of /proc/cpuinfo (CpuInfoFlags(); tests pass their
  // own), and takes the first calibration pair; the calibration finishes on the first call to
  // Calibration() (usually much later: the first ring creation), so it rarely waits. Calling Init
  // again starts over (tests only: samples already taken would change meaning).
  static void Init(bool force_monotonic, std::string_view cpuinfo_flags);
  static const TickCalibration& Calibration();

  static inline uint64_t Now() {
#if LOOPWATCH_HAVE_TSC
    if (use_tsc_) return __rdtsc();
#endif
    return MonotonicNs();
  }
  static bool using_tsc() { return use_tsc_; }

 private:
  static inline bool use_tsc_ = false;
};

}  // namespace loopwatch::shim
