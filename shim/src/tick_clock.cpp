// See tick_clock.h.
#include "tick_clock.h"

#include <time.h>

#include <fstream>
#include <string>

namespace loopwatch::shim {
namespace {

TscPair g_start_pair;
TickCalibration g_calibration;
bool g_calibrated = false;
constexpr uint64_t kCalibrationIntervalNs = 20'000'000;  // 20 ms: pair jitter (~100 ns) is < 1e-5 of it

bool HasFlag(std::string_view flags, std::string_view flag) {
  std::size_t pos = 0;
  while ((pos = flags.find(flag, pos)) != std::string_view::npos) {
    const bool starts = pos == 0 || flags[pos - 1] == ' ' || flags[pos - 1] == '\t' || flags[pos - 1] == ':';
    const std::size_t end = pos + flag.size();
    const bool ends = end == flags.size() || flags[end] == ' ' || flags[end] == '\n' || flags[end] == '\t';
    if (starts && ends) return true;
    pos = end;
  }
  return false;
}

}  // namespace

uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

bool TscIsInvariant(std::string_view flags) { return HasFlag(flags, "constant_tsc") && HasFlag(flags, "nonstop_tsc"); }

std::string CpuInfoFlags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) == 0) return line;
  }
  return "";
}

TscPair ReadTscPair() {
#if LOOPWATCH_HAVE_TSC
  TscPair best;
  uint64_t best_window = ~uint64_t{0};
  for (int i = 0; i < 16; ++i) {  // keep the pair whose rdtsc bracket was tightest (no preemption)
    const uint64_t before = __rdtsc();
    const uint64_t mono = MonotonicNs();
    const uint64_t after = __rdtsc();
    if (after - before < best_window) {
      best_window = after - before;
      best = {before + (after - before) / 2, mono};
    }
  }
  return best;
#else
  return {0, MonotonicNs()};
#endif
}

TickCalibration CalibrateTsc(const TscPair& start, uint64_t min_interval_ns) {
  const uint64_t elapsed = MonotonicNs() - start.mono_ns;
  if (elapsed < min_interval_ns) {
    const uint64_t wait = min_interval_ns - elapsed;
    timespec ts{static_cast<time_t>(wait / 1000000000u), static_cast<long>(wait % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0) {
    }
  }
  const TscPair end = ReadTscPair();
  TickCalibration c;
  c.kind = protocol::ClockKind::kTsc;
  c.tick_base = start.tsc;
  c.mono_base_ns = start.mono_ns;
  c.ns_per_tick = end.tsc > start.tsc ? static_cast<double>(end.mono_ns - start.mono_ns) / static_cast<double>(end.tsc - start.tsc) : 0.0;
  return c;
}

void TickClock::Init(bool force_monotonic, std::string_view cpuinfo_flags) {
  use_tsc_ = LOOPWATCH_HAVE_TSC && !force_monotonic && TscIsInvariant(cpuinfo_flags);
  g_calibrated = false;
  g_calibration = TickCalibration{};
  if (use_tsc_) g_start_pair = ReadTscPair();
}

const TickCalibration& TickClock::Calibration() {
  if (!g_calibrated) {
    g_calibrated = true;
    if (use_tsc_) {
      g_calibration = CalibrateTsc(g_start_pair, kCalibrationIntervalNs);
      // A TSC that did not advance cannot be trusted: fall back for the rest of the process.
      if (!(g_calibration.ns_per_tick > 0.0 && g_calibration.ns_per_tick < 1e6)) {
        use_tsc_ = false;
        g_calibration = TickCalibration{};
      }
    }
  }
  return g_calibration;
}

}  // namespace loopwatch::shim
