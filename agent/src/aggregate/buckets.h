// The histogram bucket boundaries of every per-loop series. One definition, used both to register
// the families and to pre-bucket samples locally, so the two can never disagree.
#pragma once

#include <cstddef>
#include <vector>

namespace loopwatch::agent {

// 1-2.5-5 per decade from 10 us to 10 s (19 boundaries; +Inf makes 20 buckets).
inline const std::vector<double>& SecondsBuckets() {
  static const std::vector<double> kBuckets = {1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3,
                                               2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25,
                                               0.5, 1, 2.5, 5, 10};
  return kBuckets;
}

// Handles the loop held (ready + scheduled) when a callback started.
inline const std::vector<double>& HandlesBuckets() {
  static const std::vector<double> kBuckets = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000};
  return kBuckets;
}

inline constexpr std::size_t kSecondsBucketCount = 20;  // SecondsBuckets().size() + 1 (+Inf)
inline constexpr std::size_t kHandlesBucketCount = 14;  // HandlesBuckets().size() + 1 (+Inf)

}  // namespace loopwatch::agent
