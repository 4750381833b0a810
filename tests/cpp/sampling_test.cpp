// Tests of the agent's side of sampling slow callbacks (protocol v1.3, loopwatch/attribution.h):
// a callback is armed once it is older than the arm threshold, once, with the sampling fields; a
// v1.2 ring is never armed and gets a plain capture at the stall; the current attribution names the
// in-flight gauge, the stall event and the callback's /api/slow event; the attribution table
// becomes loopwatch_blocked_seconds_total, bounded by top-K with evictions counted; the delay from
// the arm threshold to the first sample is observed. The test ring plays the shim's watchdog.
#include <gtest/gtest.h>

#include "inflight_fixture.h"
#include "loopwatch/attribution.h"

namespace loopwatch::agent {
namespace {

class SamplingTest : public InflightTest {
 protected:
  void SetUp() override {
    InflightTest::SetUp();
    auto* bytes = reinterpret_cast<unsigned char*>(ring_->header());
    table_ = protocol::AttributionTableWriter(ring_->header(), bytes + ring_->header()->attribution_offset,
                                              ring_->header()->attribution_capacity);
    ASSERT_TRUE(table_);
  }
  // What the watchdog publishes after a sample of the callback that started at `started`.
  void Attribute(Clock::time_point started, uint32_t endpoint, uint32_t handler, uint32_t site, char state,
                 uint32_t samples, uint64_t first_sample_ns) {
    protocol::WriteAttribution(*ring_->header(), {.start_ticks = Ticks(started),
                                                  .endpoint = endpoint,
                                                  .handler = handler,
                                                  .site = site,
                                                  .samples = samples,
                                                  .state = state,
                                                  .first_sample_mono_ns = first_sample_ns});
  }
  protocol::ArmRequest Arm() {
    protocol::ArmRequest arm;
    EXPECT_TRUE(protocol::LoadArm(*ring_->header(), Requests(), &arm));
    return arm;
  }
  double Blocked(const LabelSubset& labels) {
    LabelSubset all = kLoop;
    all.insert(labels.begin(), labels.end());
    return Read().Value("loopwatch_blocked_seconds_total", all).value_or(-1);
  }

  protocol::AttributionTableWriter table_;
};

TEST_F(SamplingTest, ASlowCallbackIsArmedOnceWithTheSamplingFields) {
  const Clock::time_point started = now_;
  StartCallback(started, spin_);
  Drain(std::chrono::milliseconds(49));
  EXPECT_EQ(Requests(), 0u);  // below the arm threshold: never
  agent_.Watch(now_ += std::chrono::milliseconds(2));
  ASSERT_EQ(Requests(), 1u);
  const protocol::ArmRequest arm = Arm();
  EXPECT_EQ(arm.start_ticks, Ticks(started));
  EXPECT_EQ(arm.sample_interval_us, 10'000u);
  EXPECT_EQ(arm.sample_limit, 1000u);
  EXPECT_EQ(arm.stall_after_us, 1'000'000u);  // the stall threshold: the report comes from a sample
  for (int i = 0; i < 20; ++i) agent_.Watch(now_ += std::chrono::milliseconds(100));
  EXPECT_EQ(Requests(), 1u);  // still the same callback, stalled now: no second request
  EXPECT_EQ(Stalls(), 1.0);
  ASSERT_EQ(StallEvents().size(), 1u);
  EXPECT_EQ(StallEvents()[0]["report"]["stage"], "requested");
  // The watchdog's report answers the arm's request.
  protocol::ReportFields fields;
  fields.request = 1;
  fields.callback_start_ticks = Ticks(started);
  fields.stage = protocol::ReportStage::kComplete;
  protocol::WriteReport(Report(), 4096, fields, R"({"thread": {"state": "S"}, "frames": [{"file": "/app/a.py", "line": 3, "function": "f"}]})");
  Drain(std::chrono::milliseconds(10));
  EXPECT_EQ(StallEvents()[0]["report"]["stage"], "complete");
  EndCallback();
  StartCallback(now_, spin_);  // the next slow callback is armed again
  agent_.Watch(now_ += std::chrono::milliseconds(60));
  EXPECT_EQ(Requests(), 2u);
}

class OldWriterSamplingTest : public SamplingTest {
 protected:
  OldWriterSamplingTest() { version_minor_ = 2; }
  void SetUp() override { InflightTest::SetUp(); }  // no attribution table in a v1.2 file
};

TEST_F(OldWriterSamplingTest, AV12RingIsNeverArmedAndGetsAPlainCaptureAtTheStall) {
  StartCallback(now_, spin_);
  for (int i = 0; i < 9; ++i) agent_.Watch(now_ += std::chrono::milliseconds(100));
  EXPECT_EQ(Requests(), 0u);
  agent_.Watch(now_ += std::chrono::milliseconds(150));
  EXPECT_EQ(Requests(), 1u);
  EXPECT_EQ(ring_->header()->arm_start_ticks.load(), 0u);  // reserved space left alone
  EXPECT_EQ(ring_->header()->sample_interval_us.load(), 0u);
  EXPECT_EQ(Read().Count("loopwatch_blocked_seconds_total", kLoop), 0u);
}

TEST_F(SamplingTest, TheAttributionNamesTheInflightGaugeAndTheStallEvent) {
  const uint32_t endpoint = ring_->names().Append("GET /orders/{order_id}");
  const uint32_t handler = ring_->names().Append("app.routes.get_order");
  const uint32_t site = ring_->names().Append("app.db.query (app/db.py:42)");
  const Clock::time_point started = now_;
  StartCallback(started, spin_);
  agent_.Watch(now_ += std::chrono::milliseconds(60));
  ASSERT_EQ(Requests(), 1u);
  // The first sample, 5 ms after the arm threshold.
  Attribute(started, endpoint, handler, site, 'S', 1, Ticks(started + std::chrono::milliseconds(55)));
  agent_.Watch(now_ += std::chrono::milliseconds(10));
  LabelSubset labels = kLoop;
  labels["endpoint"] = "GET /orders/{order_id}";
  labels["handler"] = "app.routes.get_order";
  labels["site"] = "app.db.query (app/db.py:42)";
  EXPECT_NEAR(Read().Value("loopwatch_callback_inflight_seconds", labels).value_or(-1), 0.07, 1e-6);
  EXPECT_EQ(Read().Count("loopwatch_callback_inflight_seconds", kLoop), 1u);  // one series per loop
  const auto delay = Read().Find("loopwatch_sampling_delay_seconds");
  ASSERT_EQ(delay.size(), 1u);
  EXPECT_EQ(delay[0].histogram.sample_count, 1u);
  EXPECT_NEAR(delay[0].histogram.sample_sum, 0.005, 1e-6);

  for (int i = 0; i < 10; ++i) agent_.Watch(now_ += std::chrono::milliseconds(100));
  ASSERT_EQ(StallEvents().size(), 1u);
  const nlohmann::json stall = StallEvents()[0];
  EXPECT_EQ(stall["endpoint"], "GET /orders/{order_id}");
  EXPECT_EQ(stall["handler"], "app.routes.get_order");
  EXPECT_EQ(stall["site"], "app.db.query (app/db.py:42)");
  EXPECT_EQ(stall["site_state"], "sleeping");
  // It ends: the gauge loses the names, the callback's sample becomes a slow event carrying them.
  EndCallback();
  ASSERT_TRUE(ring_->Push(1'200'000'000, spin_, protocol::kLagUnknown, 1, Ticks(started)));
  Drain(std::chrono::milliseconds(10));
  EXPECT_EQ(Inflight(""), 0.0);
  const nlohmann::json slow = nlohmann::json::parse(agent_.SlowJson())["events"];
  ASSERT_EQ(slow.size(), 1u);
  EXPECT_EQ(slow[0]["endpoint"], "GET /orders/{order_id}");
  EXPECT_EQ(slow[0]["site"], "app.db.query (app/db.py:42)");
}

TEST_F(SamplingTest, TheAttributionTableBecomesBlockedSecondsByKey) {
  const uint32_t endpoint = ring_->names().Append("GET /orders/{order_id}");
  const uint32_t handler = ring_->names().Append("app.get_order");
  const uint32_t sleep_site = ring_->names().Append("app.db.query (app/db.py:42)");
  const uint32_t spin_site = ring_->names().Append("app.calc.spin (app/calc.py:7)");
  const uint32_t sleeping = table_.Append({endpoint, handler, sleep_site, 'S'});
  const uint32_t running = table_.Append({endpoint, handler, spin_site, 'R'});
  table_.Add(sleeping, 300'000'000);
  table_.Add(running, 100'000'000);
  Drain(std::chrono::milliseconds(50));
  EXPECT_DOUBLE_EQ(Blocked({{"endpoint", "GET /orders/{order_id}"}, {"handler", "app.get_order"},
                            {"site", "app.db.query (app/db.py:42)"}, {"state", "sleeping"}}),
                   0.3);
  EXPECT_DOUBLE_EQ(Blocked({{"site", "app.calc.spin (app/calc.py:7)"}, {"state", "running"}}), 0.1);
  table_.Add(sleeping, 200'000'000);  // mirrored by deltas
  Drain(std::chrono::milliseconds(50));
  EXPECT_DOUBLE_EQ(Blocked({{"site", "app.db.query (app/db.py:42)"}}), 0.5);
  EXPECT_DOUBLE_EQ(Blocked({{"site", "other"}}), 0.0);
}

TEST_F(SamplingTest, KeysBeyondTopKAreOtherAndEvictionsAreCounted) {
  // top-K is 20 (AggregationOptions): 25 keys, the smallest first, so the first 20 take the
  // positions and the five biggest are "other" until the re-rank of the same cycle swaps them in.
  std::vector<uint32_t> slots;
  for (int i = 0; i < 25; ++i) {
    const uint32_t site = ring_->names().Append("app.f" + std::to_string(i) + " (app/f.py:" + std::to_string(i) + ")");
    slots.push_back(table_.Append({0, 0, site, 'R'}));
    table_.Add(slots.back(), static_cast<uint64_t>(i + 1) * 1'000'000);
  }
  Drain(std::chrono::milliseconds(50));
  EXPECT_EQ(Read().Count("loopwatch_blocked_seconds_total", kLoop), 21u);  // 20 keys + other
  EXPECT_EQ(Read().Value("loopwatch_blocked_evictions_total", kLoop), 5.0);
  EXPECT_NEAR(Blocked({{"site", "other"}}), (21 + 22 + 23 + 24 + 25) * 1e-3, 1e-9);  // their history stays there
  EXPECT_EQ(Read().Count("loopwatch_blocked_seconds_total", {{"site", "app.f0 (app/f.py:0)"}}), 0u);
  EXPECT_EQ(Blocked({{"site", "app.f24 (app/f.py:24)"}}), 0.0);  // a newcomer's series starts at zero
  // The smallest key outgrows the smallest member: it takes that series at the next re-rank.
  table_.Add(slots[0], 1'000'000'000);
  Drain(std::chrono::milliseconds(1100));
  EXPECT_EQ(Read().Count("loopwatch_blocked_seconds_total", kLoop), 21u);
  EXPECT_EQ(Read().Value("loopwatch_blocked_evictions_total", kLoop), 6.0);
  EXPECT_EQ(Read().Count("loopwatch_blocked_seconds_total", {{"site", "app.f0 (app/f.py:0)"}}), 1u);
}

TEST_F(SamplingTest, AFullTableFoldsNewKeysIntoOther) {
  const uint32_t capacity = ring_->header()->attribution_capacity / sizeof(protocol::AttributionSlot);
  uint32_t last = 0;
  for (uint32_t i = 0; i < capacity + 5; ++i) last = table_.Append({0, 0, 0, static_cast<uint32_t>('A' + i % 26)});
  EXPECT_EQ(last, capacity - 1);
  EXPECT_NE(ring_->header()->writer_flags.load() & protocol::kWriterAttributionFull, 0u);
  table_.Add(last, 7'000'000);
  Drain(std::chrono::milliseconds(50));
  EXPECT_NEAR(Blocked({{"site", "other"}, {"state", "other"}}), 0.007, 1e-9);
}

}  // namespace
}  // namespace loopwatch::agent
