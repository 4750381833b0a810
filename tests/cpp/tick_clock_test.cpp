// The shim's per-callback clock: invariant-TSC detection from the CPU flags, the calibration's
// accuracy over a known interval, and the CLOCK_MONOTONIC fallback.
#include "tick_clock.h"

#include <gtest/gtest.h>
#include <time.h>

#include <cmath>

namespace loopwatch::shim {
namespace {

constexpr const char* kInvariantFlags = "flags\t\t: fpu vme tsc msr constant_tsc rep_good nopl nonstop_tsc cpuid";

void SleepNs(uint64_t ns) {
  timespec ts{static_cast<time_t>(ns / 1000000000u), static_cast<long>(ns % 1000000000u)};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

TEST(TickClockTest, TscIsInvariantOnlyWithBothConstantAndNonstopFlags) {
  EXPECT_TRUE(TscIsInvariant(kInvariantFlags));
  EXPECT_FALSE(TscIsInvariant("flags\t\t: fpu tsc constant_tsc"));
  EXPECT_FALSE(TscIsInvariant("flags\t\t: fpu tsc nonstop_tsc"));
  EXPECT_FALSE(TscIsInvariant("flags\t\t: fpu tsc xconstant_tsc nonstop_tsc_y"));  // whole words only
  EXPECT_FALSE(TscIsInvariant(""));
}

TEST(TickClockTest, FallsBackToMonotonicWhenTheTscIsNotInvariant) {
  TickClock::Init(/*force_monotonic=*/false, "flags\t\t: fpu tsc constant_tsc");
  EXPECT_FALSE(TickClock::using_tsc());
  const TickCalibration& c = TickClock::Calibration();
  EXPECT_EQ(c.kind, protocol::ClockKind::kMonotonicNs);
  EXPECT_EQ(c.ns_per_tick, 1.0);
  const uint64_t before = MonotonicNs();
  const uint64_t now = TickClock::Now();
  EXPECT_GE(now, before);
  EXPECT_LT(now - before, 10'000'000u);  // it IS the monotonic clock
}

TEST(TickClockTest, ForcedMonotonicIgnoresAnInvariantTsc) {
  TickClock::Init(/*force_monotonic=*/true, kInvariantFlags);
  EXPECT_FALSE(TickClock::using_tsc());
  EXPECT_EQ(TickClock::Calibration().kind, protocol::ClockKind::kMonotonicNs);
}

#if LOOPWATCH_HAVE_TSC
TEST(TickClockTest, CalibratedTscConvertsAKnownIntervalWithinOnePercent) {
  if (!TscIsInvariant(CpuInfoFlags())) GTEST_SKIP() << "this CPU's TSC is not invariant";
  TickClock::Init(/*force_monotonic=*/false, CpuInfoFlags());
  ASSERT_TRUE(TickClock::using_tsc());
  const TickCalibration c = TickClock::Calibration();
  ASSERT_EQ(c.kind, protocol::ClockKind::kTsc);
  const TscPair start = ReadTscPair();
  SleepNs(100'000'000);
  const TscPair end = ReadTscPair();
  const double measured_ns = static_cast<double>(end.mono_ns - start.mono_ns);
  const double converted_ns = c.TicksToNs(end.tsc) - c.TicksToNs(start.tsc);
  EXPECT_NEAR(converted_ns / measured_ns, 1.0, 0.01);
  // Absolute conversion agrees with CLOCK_MONOTONIC too (the timer-lag path depends on it).
  EXPECT_NEAR(c.TicksToNs(end.tsc), static_cast<double>(end.mono_ns), 0.01 * measured_ns);
  EXPECT_NEAR(static_cast<double>(c.MonoNsToTicks(end.mono_ns)), static_cast<double>(end.tsc), 0.01 * measured_ns / c.ns_per_tick);
}
#endif

}  // namespace
}  // namespace loopwatch::shim
