// Tests of RecentWindow (agent/src/recent_window.h), the live page's one-second window, alone and as
// the Agent publishes it in /api/status ("recent"): rates, lag p99 and max, busy ratio, the top
// callbacks by wall time in the window (with "other"), the minute of history and its peak.
#include "aggregate/recent_window.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "agent.h"
#include "test_ring.h"

namespace loopwatch::agent {
namespace {

using protocol::kFirstNameId;
using Clock = RecentWindow::Clock;
using std::chrono::milliseconds;

constexpr double kSecondsPerTick = 1e-9;  // ticks are nanoseconds here

std::string Name(uint32_t id) { return "cb" + std::to_string(id - kFirstNameId); }

// One batch of `samples` callbacks of `ticks` each, all with lag in bucket `lag_bucket`.
void Batch(RecentWindow& window, CallbackTopK& top, uint32_t id, uint32_t samples, uint64_t ticks,
           uint64_t lag_ticks) {
  std::array<uint32_t, kSecondsBucketCount> lag_counts{};
  const auto& bounds = SecondsBuckets();
  std::size_t bucket = 0;
  while (bucket < bounds.size() && static_cast<double>(lag_ticks) * kSecondsPerTick > bounds[bucket]) ++bucket;
  lag_counts[bucket] = samples;
  for (uint32_t i = 0; i < samples; ++i) {
    window.NoteDuration(ticks);
    window.NoteLag(lag_ticks);
    top.Record(id, ticks);
  }
  window.AddBatch(samples, 0, lag_counts, static_cast<double>(samples) * static_cast<double>(ticks));
}

class RecentWindowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (uint32_t id = kFirstNameId; id < kFirstNameId + 3; ++id) top_.AddName(id);
  }
  bool Close(Clock::time_point at, uint64_t busy) { return window_.MaybeClose(at, busy, top_, Name); }

  RecentWindow window_{kSecondsPerTick};
  CallbackTopK top_{2};  // two named positions: the third name is "other"
  Clock::time_point t0_ = Clock::time_point{} + std::chrono::hours(1);
};

TEST_F(RecentWindowTest, NothingBeforeTheFirstWindowCloses) {
  EXPECT_FALSE(Close(t0_, 0));  // starts the window
  EXPECT_EQ(window_.latest(), nullptr);
  Batch(window_, top_, kFirstNameId, 10, 1000, 1000);
  EXPECT_FALSE(Close(t0_ + milliseconds(999), 0));
  EXPECT_EQ(window_.latest(), nullptr);
}

TEST_F(RecentWindowTest, ClosesWithRatesLagAndBusyRatio) {
  Close(t0_, 1'000'000);
  Batch(window_, top_, kFirstNameId, 1000, 100'000, 20'000);      // 1000 x 100 us, lag 20 us
  Batch(window_, top_, kFirstNameId + 1, 5, 1'000'000, 300'000'000);  // 5 x 1 ms, lag 300 ms
  ASSERT_TRUE(Close(t0_ + milliseconds(2000), 1'000'000 + 500'000'000));  // 0.5 s busy in 2 s
  const auto recent = window_.latest();
  ASSERT_NE(recent, nullptr);
  EXPECT_DOUBLE_EQ(recent->window_seconds, 2.0);
  EXPECT_DOUBLE_EQ(recent->callbacks_per_second, 1005 / 2.0);
  EXPECT_DOUBLE_EQ(recent->lag_max_seconds, 0.3);
  // 1005 samples: the 99th percentile (rank 995) is in the 25 us bucket, not the 300 ms outliers.
  EXPECT_DOUBLE_EQ(recent->lag_p99_seconds, 2.5e-5);
  EXPECT_DOUBLE_EQ(recent->duration_max_seconds, 0.001);
  EXPECT_DOUBLE_EQ(recent->busy_ratio, 0.25);
  ASSERT_EQ(recent->history.size(), 1u);
  EXPECT_FLOAT_EQ(recent->history[0].lag_max_seconds, 0.3f);
  EXPECT_DOUBLE_EQ(recent->lag_peak_seconds, 0.3);  // exact, not the history's float
}

TEST_F(RecentWindowTest, LagP99IsCappedAtTheExactMaximum) {
  Close(t0_, 0);
  Batch(window_, top_, kFirstNameId, 10, 1000, 260'000'000);  // 260 ms: the 0.5 s bucket
  ASSERT_TRUE(Close(t0_ + milliseconds(1000), 0));
  EXPECT_DOUBLE_EQ(window_.latest()->lag_p99_seconds, 0.26);
}

TEST_F(RecentWindowTest, TopCallbacksAreTheWindowsOwnWallTimeWithOther) {
  Close(t0_, 0);
  Batch(window_, top_, kFirstNameId, 10, 1'000'000, 0);  // before the window that is checked: 10 ms
  Close(t0_ + milliseconds(1000), 0);
  Batch(window_, top_, kFirstNameId, 1, 1'000'000, 0);      // cb0: 1 ms in this window
  Batch(window_, top_, kFirstNameId + 1, 3, 1'000'000, 0);  // cb1: 3 ms, takes the second position now
  Batch(window_, top_, kFirstNameId + 2, 2, 1'000'000, 0);  // cb2: no position left -> other, 2 ms
  ASSERT_TRUE(Close(t0_ + milliseconds(2000), 0));
  const auto& top = window_.latest()->top_callbacks;
  // Each callback's own time in this window: cb0 1 ms (not its 11 ms total), cb1 3 ms although it
  // had no position at the last close, and cb2's 2 ms as "other".
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].name, "cb1");
  EXPECT_NEAR(top[0].seconds, 0.003, 1e-12);
  EXPECT_EQ(top[1].name, "other");
  EXPECT_NEAR(top[1].seconds, 0.002, 1e-12);
  EXPECT_EQ(top[2].name, "cb0");
  EXPECT_NEAR(top[2].seconds, 0.001, 1e-12);

  Batch(window_, top_, kFirstNameId + 1, 4, 1'000'000, 0);
  Batch(window_, top_, kFirstNameId, 1, 1'000'000, 0);
  ASSERT_TRUE(Close(t0_ + milliseconds(3000), 0));
  const auto& next = window_.latest()->top_callbacks;
  ASSERT_EQ(next.size(), 2u);  // no "other": nothing outside the top K ran
  EXPECT_EQ(next[0].name, "cb1");
  EXPECT_NEAR(next[0].seconds, 0.004, 1e-12);
  EXPECT_EQ(next[1].name, "cb0");
}

TEST_F(RecentWindowTest, AnIdleWindowIsZeroNotStale) {
  Close(t0_, 0);
  Batch(window_, top_, kFirstNameId, 100, 1000, 5'000'000);
  Close(t0_ + milliseconds(1000), 0);
  ASSERT_TRUE(Close(t0_ + milliseconds(2000), 0));  // nothing ran (a loop stuck in one callback)
  const auto recent = window_.latest();
  EXPECT_EQ(recent->callbacks_per_second, 0);
  EXPECT_EQ(recent->lag_max_seconds, 0);
  EXPECT_EQ(recent->lag_p99_seconds, 0);
  EXPECT_TRUE(recent->top_callbacks.empty());
  EXPECT_NEAR(recent->lag_peak_seconds, 0.005, 1e-9);  // the minute still remembers
}

TEST_F(RecentWindowTest, HistoryKeepsTheLastMinute) {
  Close(t0_, 0);
  for (int second = 1; second <= 70; ++second) {
    Batch(window_, top_, kFirstNameId, 1, 1000, second == 5 ? 2'000'000'000 : static_cast<uint64_t>(second) * 1'000'000);
    ASSERT_TRUE(Close(t0_ + milliseconds(1000 * second), 0));
    if (second == 64) {
      EXPECT_NEAR(window_.latest()->lag_peak_seconds, 2.0, 1e-6) << "second 5 is still in the minute";
    }
  }
  const auto recent = window_.latest();
  ASSERT_EQ(recent->history.size(), RecentWindow::kHistoryPoints);
  EXPECT_FLOAT_EQ(recent->history.front().lag_max_seconds, 0.011f);  // second 11 is the oldest kept
  EXPECT_FLOAT_EQ(recent->history.back().lag_max_seconds, 0.070f);
  EXPECT_NEAR(recent->lag_peak_seconds, 0.070, 1e-6);  // second 5's 2 s fell out of the minute
}

// Through the Agent: the ring's "recent" in /api/status, and the thresholds the page colours by.
TEST(RecentWindowAgentTest, StatusCarriesTheWindowOfEachRing) {
  testing::TempDir dir;
  testing::TestRing ring(dir.File("lw-4242-1-1.ring"));
  testing::LockHolder holder(ring.path());
  ring.names().Append("handler");
  AgentOptions options{dir.path(), {}};
  options.aggregation.slow_threshold_seconds = 0.25;
  options.stalls.stall_threshold_seconds = 2;
  Agent agent(options);
  const auto t0 = Clock::now();
  agent.Scan(t0);
  agent.Drain(t0);
  nlohmann::json json = nlohmann::json::parse(agent.StatusJson());
  EXPECT_TRUE(json["rings"][0]["recent"].is_null());
  EXPECT_EQ(json["agent"]["slow_threshold_seconds"], 0.25);
  EXPECT_EQ(json["agent"]["stall_threshold_seconds"], 2);

  for (int i = 0; i < 40; ++i) ring.Push(2'000'000, kFirstNameId, 7'000'000);  // 2 ms each, lag 7 ms
  agent.Drain(t0 + milliseconds(1000));
  json = nlohmann::json::parse(agent.StatusJson());
  const auto& recent = json["rings"][0]["recent"];
  ASSERT_TRUE(recent.is_object()) << json.dump();
  EXPECT_DOUBLE_EQ(recent["callbacks_per_second"].get<double>(), 40.0);
  EXPECT_DOUBLE_EQ(recent["lag_max_seconds"].get<double>(), 0.007);
  EXPECT_DOUBLE_EQ(recent["lag_p99_seconds"].get<double>(), 0.007);
  EXPECT_DOUBLE_EQ(recent["duration_max_seconds"].get<double>(), 0.002);
  ASSERT_EQ(recent["top_callbacks"].size(), 1u);
  EXPECT_EQ(recent["top_callbacks"][0]["callback"], "handler");
  EXPECT_NEAR(recent["top_callbacks"][0]["seconds"].get<double>(), 0.08, 1e-9);
  ASSERT_EQ(recent["history"]["lag_max_seconds"].size(), 1u);
  EXPECT_EQ(recent["history"]["callbacks_per_second"].size(), 1u);
  EXPECT_EQ(recent["history"]["busy_ratio"].size(), 1u);
  EXPECT_EQ(json["rings"][0]["inflight_callback"], "");
}

}  // namespace
}  // namespace loopwatch::agent
