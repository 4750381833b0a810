// Builds the tick-domain bucket tables; see bucket_index.h.
#include "aggregate/bucket_index.h"

#include <cmath>

namespace loopwatch::agent {
namespace {

constexpr double kTwoTo64 = 18446744073709551616.0;

// A first guess of seconds / (seconds per tick), clamped into the uint64 range.
uint64_t GuessTicks(double seconds, const protocol::HeaderSnapshot& clock) {
  const double ticks = seconds / (clock.clock_ns_per_tick * 1e-9);
  if (!(ticks > 0)) return 0;
  if (ticks >= kTwoTo64) return UINT64_MAX;
  return static_cast<uint64_t>(ticks);
}

}  // namespace

uint64_t MaxTicksAtMost(double seconds, const protocol::HeaderSnapshot& clock) {
  uint64_t t = GuessTicks(seconds, clock);
  // The guess is within a few ticks of the answer; step until TicksToSeconds agrees exactly.
  while (t > 0 && clock.TicksToSeconds(t) > seconds) --t;
  while (t < UINT64_MAX && clock.TicksToSeconds(t + 1) <= seconds) ++t;
  return t;
}

uint64_t MinTicksAtLeast(double seconds, const protocol::HeaderSnapshot& clock) {
  uint64_t t = GuessTicks(seconds, clock);
  while (t > 0 && clock.TicksToSeconds(t - 1) >= seconds) --t;
  while (t < UINT64_MAX && clock.TicksToSeconds(t) < seconds) ++t;
  return t;
}

BucketIndex::BucketIndex(const std::vector<uint64_t>& inclusive_upper_bounds) {
  bounds_ = inclusive_upper_bounds;
  bounds_.push_back(UINT64_MAX);
  const auto last = static_cast<uint32_t>(bounds_.size() - 1);
  for (int width = 0; width <= 64; ++width) {
    const uint64_t smallest = width == 0 ? 0 : uint64_t{1} << (width - 1);
    uint32_t i = 0;
    while (i < last && bounds_[i] < smallest) ++i;
    first_candidate_[width] = i;
  }
}

BucketIndex BucketIndex::ForSeconds(const std::vector<double>& seconds_bounds,
                                    const protocol::HeaderSnapshot& clock) {
  std::vector<uint64_t> ticks;
  ticks.reserve(seconds_bounds.size());
  for (double bound : seconds_bounds) ticks.push_back(MaxTicksAtMost(bound, clock));
  return BucketIndex(ticks);
}

BucketIndex BucketIndex::ForCounts(const std::vector<double>& count_bounds) {
  std::vector<uint64_t> counts;
  counts.reserve(count_bounds.size());
  for (double bound : count_bounds) counts.push_back(bound <= 0 ? 0 : static_cast<uint64_t>(std::floor(bound)));
  return BucketIndex(counts);
}

}  // namespace loopwatch::agent
