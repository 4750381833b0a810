// Tests of LoopMetrics (agent/src/loop_metrics.h): samples become the right histogram buckets,
// counters and sums (read back through Registry::Collect, as a scrape sees them); the callback top-K
// keeps at most K+1 series and counts evictions; and destruction removes every series.
#include "aggregate/loop_metrics.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>

#include <prometheus/registry.h>

#include "metric_reader.h"

namespace loopwatch::agent {
namespace {

using protocol::kFirstNameId;
using protocol::kLagUnknown;
using protocol::Sample;
using testing::LabelSubset;
using testing::MetricReader;

constexpr uint64_t kUs = 1000;  // ticks per microsecond at 1 ns per tick
constexpr uint64_t kMs = 1000 * kUs;

protocol::HeaderSnapshot Header(double ns_per_tick = 1.0) {
  protocol::HeaderSnapshot header;
  std::strcpy(header.service, "checkout");
  header.pid = 99;
  header.loop_id = 2;
  header.loop_thread_id = 100;
  header.loop_kind = protocol::LoopKind::kUvloop;
  header.clock_ns_per_tick = ns_per_tick;
  return header;
}

Sample MakeSample(uint64_t duration, uint32_t name_id = protocol::kNameIdOther, uint64_t lag = kLagUnknown,
                  uint32_t handles = 1) {
  Sample s{};
  s.duration_ticks = duration;
  s.lag_ticks = lag;
  s.name_id = name_id;
  s.handles_kind = Sample::PackHandlesKind(handles, protocol::SampleKind::kReady);
  return s;
}

const LabelSubset kLoop = {{"service", "checkout"}, {"pid", "99"}, {"loop", "2"}};

class LoopMetricsTest : public ::testing::Test {
 protected:
  std::unique_ptr<LoopMetrics> Make(uint32_t top_k = 20, double ns_per_tick = 1.0) {
    return std::make_unique<LoopMetrics>(families_, Header(ns_per_tick), AggregationOptions{top_k, 0.1});
  }
  MetricReader Read() { return MetricReader(*registry_); }

  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  LoopFamilies families_{*registry_};
};

// Found by the fuzzer: without a slow log, the largest possible duration must not count as an event.
TEST_F(LoopMetricsTest, LargestDurationWithoutASlowLogIsCountedNotRecorded) {
  auto metrics = Make();
  metrics->Add(MakeSample(~uint64_t{0}));
  metrics->FlushBatch();
  EXPECT_EQ(Read().Value("loopwatch_slow_callbacks_total", kLoop), 1.0);
}

TEST_F(LoopMetricsTest, CountsSamplesIntoTheBucketsObserveWouldPick) {
  auto metrics = Make();
  metrics->Add(MakeSample(5 * kUs, protocol::kNameIdOther, 3 * kUs, 1));
  metrics->Add(MakeSample(10 * kUs, protocol::kNameIdOther, 2 * kMs, 7));  // exactly on le="1e-05"
  metrics->Add(MakeSample(30 * kUs, protocol::kNameIdOther, kLagUnknown, 150));
  metrics->Add(MakeSample(150 * kMs, protocol::kNameIdOther, 0, 20000));  // slow
  metrics->Add(MakeSample(20'000 * kMs));                                 // slow, beyond 10 s
  metrics->FlushBatch();

  const MetricReader read = Read();
  EXPECT_EQ(read.Value("loopwatch_callbacks_total", kLoop), 5.0);
  EXPECT_EQ(read.Value("loopwatch_slow_callbacks_total", kLoop), 2.0);
  const auto duration = read.Histogram("loopwatch_callback_duration_seconds", kLoop);
  ASSERT_TRUE(duration);
  EXPECT_EQ(duration->sample_count, 5u);
  EXPECT_NEAR(duration->sample_sum, 5e-6 + 10e-6 + 30e-6 + 0.150 + 20.0, 1e-9);
  EXPECT_EQ(MetricReader::CumulativeAt(*duration, 1e-5), 2u);
  EXPECT_EQ(MetricReader::CumulativeAt(*duration, 2.5e-5), 2u);
  EXPECT_EQ(MetricReader::CumulativeAt(*duration, 5e-5), 3u);
  EXPECT_EQ(MetricReader::CumulativeAt(*duration, 0.1), 3u);
  EXPECT_EQ(MetricReader::CumulativeAt(*duration, 0.25), 4u);
  EXPECT_EQ(MetricReader::CumulativeAt(*duration, 10), 4u);

  const auto lag = read.Histogram("loopwatch_loop_lag_seconds", kLoop);
  ASSERT_TRUE(lag);
  EXPECT_EQ(lag->sample_count, 3u);  // two samples had no known lag
  EXPECT_EQ(MetricReader::CumulativeAt(*lag, 1e-5), 2u);  // 3 us and 0
  EXPECT_EQ(MetricReader::CumulativeAt(*lag, 2.5e-3), 3u);
  EXPECT_NEAR(lag->sample_sum, 3e-6 + 2e-3, 1e-12);

  const auto handles = read.Histogram("loopwatch_loop_handles", kLoop);
  ASSERT_TRUE(handles);
  EXPECT_EQ(handles->sample_count, 5u);
  EXPECT_EQ(MetricReader::CumulativeAt(*handles, 1), 2u);  // 1 and the default 1
  EXPECT_EQ(MetricReader::CumulativeAt(*handles, 10), 3u);
  EXPECT_EQ(MetricReader::CumulativeAt(*handles, 200), 4u);
  EXPECT_EQ(MetricReader::CumulativeAt(*handles, 10000), 4u);  // 20000 is only in +Inf
  EXPECT_DOUBLE_EQ(handles->sample_sum, 1 + 7 + 150 + 20000 + 1);

  const auto info = read.Find("loopwatch_loop_info", kLoop);
  ASSERT_EQ(info.size(), 1u);
  EXPECT_EQ(MetricReader::LabelOf(info[0], "kind"), "uvloop");
  EXPECT_EQ(MetricReader::LabelOf(info[0], "thread"), "100");
  EXPECT_EQ(info[0].gauge.value, 1.0);
}

TEST_F(LoopMetricsTest, ConvertsTicksWithHeaderCalibration) {
  auto metrics = Make(20, /*ns_per_tick=*/0.5);
  metrics->Add(MakeSample(40'000));           // 20 us -> le 2.5e-5
  metrics->Add(MakeSample(200'000'000));      // 100 ms: exactly the slow threshold
  metrics->FlushBatch();
  const MetricReader read = Read();
  const auto duration = read.Histogram("loopwatch_callback_duration_seconds", kLoop);
  ASSERT_TRUE(duration);
  EXPECT_EQ(MetricReader::CumulativeAt(*duration, 1e-5), 0u);
  EXPECT_EQ(MetricReader::CumulativeAt(*duration, 2.5e-5), 1u);
  EXPECT_EQ(MetricReader::CumulativeAt(*duration, 0.1), 2u);
  EXPECT_NEAR(duration->sample_sum, 20e-6 + 0.1, 1e-12);
  EXPECT_EQ(read.Value("loopwatch_slow_callbacks_total", kLoop), 1.0);
}

TEST_F(LoopMetricsTest, NothingReachesTheSeriesBeforeFlush) {
  auto metrics = Make();
  metrics->Add(MakeSample(kMs));
  EXPECT_EQ(Read().Value("loopwatch_callbacks_total", kLoop), 0.0);
  metrics->FlushBatch();
  EXPECT_EQ(Read().Value("loopwatch_callbacks_total", kLoop), 1.0);
}

TEST_F(LoopMetricsTest, NamedSeriesFollowTheCallbackName) {
  auto metrics = Make();
  metrics->AddName(kFirstNameId, "api.get_user");
  metrics->AddName(kFirstNameId + 1, "Task.step worker.py:40");
  for (int i = 0; i < 3; ++i) metrics->Add(MakeSample(kMs, kFirstNameId));
  metrics->Add(MakeSample(2 * kMs, kFirstNameId + 1));
  metrics->Add(MakeSample(3 * kMs, protocol::kNameIdOther));
  metrics->Add(MakeSample(4 * kMs, kFirstNameId + 50));  // unknown id
  metrics->FlushBatch();
  const MetricReader read = Read();
  auto named = [&](const std::string& callback) {
    LabelSubset labels = kLoop;
    labels["callback"] = callback;
    return read.Histogram("loopwatch_named_callback_duration_seconds", labels);
  };
  ASSERT_TRUE(named("api.get_user"));
  EXPECT_EQ(named("api.get_user")->sample_count, 3u);
  ASSERT_TRUE(named("Task.step worker.py:40"));
  EXPECT_EQ(named("Task.step worker.py:40")->sample_count, 1u);
  ASSERT_TRUE(named("other"));
  EXPECT_EQ(named("other")->sample_count, 2u);
  EXPECT_NEAR(named("other")->sample_sum, 7e-3, 1e-12);
}

TEST_F(LoopMetricsTest, DuplicateAndReservedNamesGetSeparateSeries) {
  auto metrics = Make();
  metrics->AddName(kFirstNameId, "dup");
  metrics->AddName(kFirstNameId + 1, "dup");
  metrics->AddName(kFirstNameId + 2, "other");
  for (uint32_t id = kFirstNameId; id < kFirstNameId + 3; ++id) metrics->Add(MakeSample(kMs, id));
  metrics->Add(MakeSample(kMs, protocol::kNameIdOther));
  metrics->FlushBatch();
  const MetricReader read = Read();
  const auto series = read.Find("loopwatch_named_callback_duration_seconds", kLoop);
  ASSERT_EQ(series.size(), 4u);
  for (const auto& s : series) EXPECT_EQ(s.histogram.sample_count, 1u) << MetricReader::LabelOf(s, "callback");
  metrics.reset();  // must not double-free a shared series
  EXPECT_EQ(Read().Count("loopwatch_named_callback_duration_seconds"), 0u);
}

TEST_F(LoopMetricsTest, TopKKeepsAtMostKPlusOneSeriesAndCountsEvictions) {
  constexpr uint32_t kK = 3;
  auto metrics = Make(kK);
  constexpr uint32_t kNames = 10;
  for (uint32_t i = 0; i < kNames; ++i) metrics->AddName(kFirstNameId + i, "cb" + std::to_string(i));
  auto now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  // Round r: name i runs (i + 1) ms, so later names accumulate more time and should take over.
  for (int round = 0; round < 6; ++round) {
    for (uint32_t i = 0; i < kNames; ++i) metrics->Add(MakeSample((i + 1) * kMs, kFirstNameId + i));
    metrics->FlushBatch();
    metrics->MaybeRerank(now);
    now += std::chrono::seconds(2);
    EXPECT_LE(Read().Count("loopwatch_named_callback_duration_seconds", kLoop), kK + 1) << "round " << round;
    EXPECT_LE(metrics->named_series(), kK + 1);
  }
  const MetricReader read = Read();
  EXPECT_EQ(read.Value("loopwatch_callback_name_evictions_total", kLoop), static_cast<double>(metrics->evictions()));
  EXPECT_EQ(metrics->evictions(), 3u);  // cb0..cb2 (first seen) lost to cb9, cb8, cb7
  LabelSubset labels = kLoop;
  for (const char* name : {"cb9", "cb8", "cb7", "other"}) {
    labels["callback"] = name;
    EXPECT_EQ(read.Count("loopwatch_named_callback_duration_seconds", labels), 1u) << name;
  }
  labels["callback"] = "cb0";
  EXPECT_EQ(read.Count("loopwatch_named_callback_duration_seconds", labels), 0u);
  // A newcomer's series started at zero: it holds the rounds after its admission only (5 of 6).
  labels["callback"] = "cb9";
  EXPECT_EQ(read.Histogram("loopwatch_named_callback_duration_seconds", labels)->sample_count, 5u);
  // Everything is somewhere: the named series together hold every sample not lost to eviction.
  EXPECT_EQ(metrics->samples(), 6u * kNames);
}

TEST_F(LoopMetricsTest, RerankHappensAtMostOncePerSecond) {
  auto metrics = Make(1);
  metrics->AddName(kFirstNameId, "a");
  metrics->AddName(kFirstNameId + 1, "b");
  const auto start = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  metrics->Add(MakeSample(kMs, kFirstNameId));
  metrics->MaybeRerank(start);
  metrics->Add(MakeSample(100 * kMs, kFirstNameId + 1));
  metrics->MaybeRerank(start + std::chrono::milliseconds(500));
  EXPECT_EQ(metrics->evictions(), 0u);
  metrics->MaybeRerank(start + std::chrono::milliseconds(1000));
  EXPECT_EQ(metrics->evictions(), 1u);
}

TEST_F(LoopMetricsTest, MirrorsTheWritersDropCounterByDeltas) {
  auto metrics = Make();
  metrics->MirrorDropped(5);
  metrics->MirrorDropped(5);
  metrics->MirrorDropped(12);
  metrics->MirrorDropped(3);  // never goes down
  EXPECT_EQ(Read().Value("loopwatch_dropped_samples_total", kLoop), 12.0);
}

TEST_F(LoopMetricsTest, MirrorsTheWritersBusyTicksAsSecondsByDeltas) {
  auto metrics = Make();
  metrics->MirrorBusy(2 * kMs);
  metrics->MirrorBusy(kMs);  // never goes down
  metrics->MirrorBusy(5 * kMs);
  EXPECT_NEAR(Read().Value("loopwatch_loop_busy_seconds_total", kLoop).value_or(-1), 0.005, 1e-12);
}

TEST_F(LoopMetricsTest, DestructionRemovesEverySeriesOfTheLoop) {
  auto metrics = Make(2);
  metrics->AddName(kFirstNameId, "a");
  metrics->Add(MakeSample(kMs, kFirstNameId));
  metrics->FlushBatch();
  ASSERT_GT(Read().Count("loopwatch_callbacks_total", kLoop), 0u);
  metrics.reset();
  const MetricReader read = Read();
  for (const char* family : {"loopwatch_callback_duration_seconds", "loopwatch_loop_lag_seconds", "loopwatch_loop_handles",
                             "loopwatch_callbacks_total", "loopwatch_slow_callbacks_total", "loopwatch_dropped_samples_total",
                             "loopwatch_loop_busy_seconds_total",
                             "loopwatch_callback_name_evictions_total", "loopwatch_loop_info",
                             "loopwatch_named_callback_duration_seconds"}) {
    EXPECT_EQ(read.Count(family), 0u) << family;
  }
}

}  // namespace
}  // namespace loopwatch::agent
