// Picks a histogram bucket for a raw integer (clock ticks or a handle count) in a few instructions,
// so that the drain loop can pre-bucket millions of samples per second without converting each one
// to seconds. The result is the bucket prometheus::Histogram::Observe would pick for the value in
// seconds: the first boundary b with value <= b, or the +Inf bucket.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <vector>

#include "loopwatch/header_check.h"

namespace loopwatch::agent {

class BucketIndex {
 public:
  BucketIndex() = default;
  // `inclusive_upper_bounds` must be non-decreasing; a value v belongs to the first bucket i with
  // v <= inclusive_upper_bounds[i], otherwise to the last (+Inf) bucket.
  explicit BucketIndex(const std::vector<uint64_t>& inclusive_upper_bounds);

  // Boundaries given in seconds, converted to ticks with the ring header's clock calibration.
  static BucketIndex ForSeconds(const std::vector<double>& seconds_bounds,
                                const protocol::HeaderSnapshot& clock);
  // Boundaries that are already integers (e.g. handle counts).
  static BucketIndex ForCounts(const std::vector<double>& count_bounds);

  // Thread compatible (const).
  uint32_t Index(uint64_t value) const {
    uint32_t i = first_candidate_[std::bit_width(value)];
    while (value > bounds_[i]) ++i;  // bounds_ ends with a UINT64_MAX sentinel
    return i;
  }

  // Bucket count including +Inf.
  uint32_t size() const { return static_cast<uint32_t>(bounds_.size()); }

 private:
  std::vector<uint64_t> bounds_{UINT64_MAX};  // upper bounds, plus the +Inf sentinel
  // first_candidate_[w]: first bucket whose bound is >= the smallest value of bit width w.
  std::array<uint32_t, 65> first_candidate_{};
};

// The largest tick count whose duration in seconds is <= `seconds` (0 if none is).
uint64_t MaxTicksAtMost(double seconds, const protocol::HeaderSnapshot& clock);
// The smallest tick count whose duration in seconds is >= `seconds` (UINT64_MAX if none is).
uint64_t MinTicksAtLeast(double seconds, const protocol::HeaderSnapshot& clock);

}  // namespace loopwatch::agent
