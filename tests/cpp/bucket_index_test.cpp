// Tests of BucketIndex (agent/src/bucket_index.h): the tick-domain bucket choice must be the bucket
// prometheus::Histogram::Observe would pick for the same duration in seconds, for any clock rate.
#include "aggregate/bucket_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include <prometheus/histogram.h>

#include "aggregate/buckets.h"

namespace loopwatch::agent {
namespace {

protocol::HeaderSnapshot Clock(double ns_per_tick) {
  protocol::HeaderSnapshot clock;
  clock.clock_ns_per_tick = ns_per_tick;
  return clock;
}

// The bucket prometheus-cpp documents: the first boundary >= value, else +Inf.
uint32_t ReferenceBucket(double value, const std::vector<double>& bounds) {
  return static_cast<uint32_t>(std::find_if(bounds.begin(), bounds.end(), [value](double b) { return b >= value; }) -
                               bounds.begin());
}

// Which bucket a real prometheus::Histogram puts `value` in.
uint32_t PrometheusBucket(double value, const std::vector<double>& bounds) {
  prometheus::Histogram histogram(bounds);
  histogram.Observe(value);
  const auto buckets = histogram.Collect().histogram.bucket;
  for (uint32_t i = 0; i < buckets.size(); ++i) {
    if (buckets[i].cumulative_count == 1) return i;
  }
  return UINT32_MAX;
}

TEST(BucketIndexTest, ReferenceMatchesPrometheusHistogramAtBoundaries) {
  const auto& bounds = SecondsBuckets();
  for (double b : bounds) {
    EXPECT_EQ(PrometheusBucket(b, bounds), ReferenceBucket(b, bounds)) << b;
    EXPECT_EQ(PrometheusBucket(std::nextafter(b, 1e9), bounds), ReferenceBucket(std::nextafter(b, 1e9), bounds)) << b;
  }
}

TEST(BucketIndexTest, PicksObserveBucketAroundEveryBoundaryForAnyClockRate) {
  const auto& bounds = SecondsBuckets();
  for (double ns_per_tick : {1.0, 0.37, 0.2857142857, 2.5, 1000.0}) {
    const protocol::HeaderSnapshot clock = Clock(ns_per_tick);
    const BucketIndex index = BucketIndex::ForSeconds(bounds, clock);
    ASSERT_EQ(index.size(), kSecondsBucketCount);
    int mismatches = 0;
    for (double b : bounds) {
      const uint64_t edge = MaxTicksAtMost(b, clock);
      for (uint64_t t = edge > 3 ? edge - 3 : 0; t <= edge + 3; ++t) {
        if (index.Index(t) != ReferenceBucket(clock.TicksToSeconds(t), bounds)) ++mismatches;
      }
    }
    std::mt19937_64 random(7);
    for (int i = 0; i < 100000; ++i) {
      const uint64_t t = random() >> (random() % 64);
      if (index.Index(t) != ReferenceBucket(clock.TicksToSeconds(t), bounds)) ++mismatches;
    }
    EXPECT_EQ(mismatches, 0) << "ns_per_tick " << ns_per_tick;
  }
}

TEST(BucketIndexTest, CountBucketsIncludeTheirUpperBound) {
  const BucketIndex index = BucketIndex::ForCounts(HandlesBuckets());
  ASSERT_EQ(index.size(), kHandlesBucketCount);
  EXPECT_EQ(index.Index(0), 0u);
  EXPECT_EQ(index.Index(1), 0u);
  EXPECT_EQ(index.Index(2), 1u);
  EXPECT_EQ(index.Index(3), 2u);
  EXPECT_EQ(index.Index(10000), 12u);
  EXPECT_EQ(index.Index(10001), 13u);  // +Inf
  EXPECT_EQ(index.Index(UINT64_MAX), 13u);
}

TEST(BucketIndexTest, SlowThresholdInTicksFollowsCalibration) {
  EXPECT_EQ(MinTicksAtLeast(0.1, Clock(1.0)), 100'000'000u);
  EXPECT_EQ(MinTicksAtLeast(0.1, Clock(0.5)), 200'000'000u);
  const protocol::HeaderSnapshot odd = Clock(0.37);
  const uint64_t t = MinTicksAtLeast(0.1, odd);
  EXPECT_GE(odd.TicksToSeconds(t), 0.1);
  EXPECT_LT(odd.TicksToSeconds(t - 1), 0.1);
}

}  // namespace
}  // namespace loopwatch::agent
