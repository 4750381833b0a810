// Tests of stall forensics on the agent side (agent/src/stall_watch.h, event_log.h, slow events in
// loop_metrics.h), driven through the Agent with a test ring playing the shim: the in-flight gauge
// and its callback label, one stall counted per stalled callback, the capture request and its futex
// wake-up, the report followed from "requested" to a parsed stack, a watchdog that never answers,
// and /api/slow events. A healthy loop never gets a capture request.
#include "stalls/stall_watch.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "inflight_fixture.h"
#include "loopwatch/futex.h"
#include "loopwatch/stall_report.h"

namespace loopwatch::agent {
namespace {

using StallWatchTest = InflightTest;

TEST_F(StallWatchTest, IdleLoopShowsZeroAndNoCallbackName) {
  Drain(std::chrono::milliseconds(50));
  EXPECT_EQ(Inflight(""), 0.0);
  EXPECT_EQ(Read().Count("loopwatch_callback_inflight_seconds", kLoop), 1u);
  EXPECT_EQ(Stalls(), 0.0);
}

TEST_F(StallWatchTest, HealthyCallbacksBelowTheArmThresholdNeverRequestAnything) {
  for (int i = 0; i < 200; ++i) {
    StartCallback(now_, spin_);
    Drain(std::chrono::milliseconds(49));  // each "callback" is 49 ms old when the agent looks (arm: 50)
    EndCallback();
  }
  EXPECT_EQ(Stalls(), 0.0);
  EXPECT_EQ(Requests(), 0u);
  EXPECT_EQ(StallEvents().size(), 0u);
}

TEST_F(StallWatchTest, StalledCallbackIsCountedOnceNamedAndReportedWithItsStack) {
  std::atomic<bool> woken{false};
  std::thread watchdog([this, &woken] {  // what the shim's watchdog does: sleep on the futex
    while (Requests() == 0) protocol::FutexWait(&ring_->header()->capture_request, 0, 5'000'000'000);
    woken = true;
  });
  StartCallback(now_, spin_);
  Drain(std::chrono::milliseconds(300));
  EXPECT_NEAR(*Inflight("app.spin"), 0.3, 0.05);  // named once older than the slow threshold
  EXPECT_FALSE(Inflight("").has_value());          // one series per loop
  EXPECT_EQ(Stalls(), 0.0);
  Drain(std::chrono::milliseconds(1000));
  EXPECT_EQ(Stalls(), 1.0);
  EXPECT_EQ(Requests(), 1u);
  watchdog.join();
  EXPECT_TRUE(woken);
  ASSERT_EQ(StallEvents().size(), 1u);
  EXPECT_EQ(StallEvents()[0]["callback"], "app.spin");
  EXPECT_EQ(StallEvents()[0]["report"]["stage"], "requested");

  // The watchdog answers: thread state first, then the stack.
  protocol::ReportFields fields;
  fields.request = 1;
  fields.callback_start_ticks = ring_->header()->inflight_start_ticks.load();
  fields.name_id = spin_;
  fields.stage = protocol::ReportStage::kThreadStateOnly;
  protocol::WriteReport(Report(), 4096, fields, R"({"thread": {"state": "R", "wchan": "0"}})");
  Drain(std::chrono::milliseconds(50));
  EXPECT_EQ(StallEvents()[0]["report"]["stage"], "thread_state_only");
  EXPECT_EQ(StallEvents()[0]["report"]["state"], "running");
  fields.stage = protocol::ReportStage::kComplete;
  fields.gil_wait_ns = 5'000'000;
  protocol::WriteReport(Report(), 4096, fields,
                        R"({"thread": {"state": "R"}, "frames": [{"file": "/app/main.py", "line": 42, "function": "spin"},)"
                        R"( {"file": "/app/asgi.py", "line": 7, "function": "handle"}]})");
  Drain(std::chrono::milliseconds(50));
  const nlohmann::json report = StallEvents()[0]["report"];
  EXPECT_EQ(report["stage"], "complete");
  EXPECT_EQ(report["innermost"], "/app/main.py:42 in spin");
  EXPECT_EQ(report["stack"].size(), 2u);
  EXPECT_DOUBLE_EQ(report["gil_wait_seconds"].get<double>(), 0.005);

  // Still the same callback: no second stall, no second request.
  Drain(std::chrono::milliseconds(2000));
  EXPECT_EQ(Stalls(), 1.0);
  EXPECT_EQ(Requests(), 1u);
  EXPECT_NEAR(StallEvents()[0]["running_seconds"].get<double>(), 3.4, 0.1);
  EndCallback();
  Drain(std::chrono::milliseconds(50));
  EXPECT_TRUE(StallEvents()[0]["finished"].get<bool>());
  EXPECT_EQ(Inflight(""), 0.0);
  // The next stalled callback is a new stall.
  StartCallback(now_, spin_);
  Drain(std::chrono::milliseconds(1100));
  EXPECT_EQ(Stalls(), 2.0);
  EXPECT_EQ(Requests(), 2u);
  EXPECT_EQ(StallEvents().size(), 2u);
}

TEST_F(StallWatchTest, AWatchdogThatNeverAnswersIsReportedAfterTheTimeout) {
  StartCallback(now_, spin_);
  Drain(std::chrono::milliseconds(1500));
  ASSERT_EQ(StallEvents()[0]["report"]["stage"], "requested");
  Drain(std::chrono::seconds(11));
  EXPECT_EQ(StallEvents()[0]["report"]["stage"], "no_answer");
  EXPECT_NE(StallEvents()[0]["report"]["error"].get<std::string>().find("watchdog"), std::string::npos);
}

TEST_F(StallWatchTest, GarbageReportTextIsNotTrusted) {
  protocol::ReportFields fields = StallUntilCaptureRequested();
  protocol::WriteReport(Report(), 4096, fields, "{\"frames\": [1, {\"line\": \"x\"}, \"\xff\xfe\"], \"thread\": 7");
  Drain(std::chrono::milliseconds(50));
  EXPECT_EQ(StallEvents()[0]["report"]["error"], "unreadable report");
  // An impossible length is never read past the region.
  reinterpret_cast<protocol::ReportHeader*>(Report())->text_length = 1u << 30;
  Drain(std::chrono::milliseconds(50));
  EXPECT_NO_THROW(nlohmann::json::parse(agent_.StallsJson()));
}

// Valid JSON with every field of the wrong type (found in review, reproduced by the fuzzer).
TEST_F(StallWatchTest, ReportFieldsOfTheWrongTypeAreIgnored) {
  protocol::ReportFields fields = StallUntilCaptureRequested();
  protocol::WriteReport(Report(), 4096, fields,
                        R"({"thread": {"state": 7, "wchan": []}, "frames": [{"file": 1, "line": "x", "function": {}}],)"
                        R"( "error": 5})");
  Drain(std::chrono::milliseconds(50));
  const nlohmann::json typed = StallEvents()[0]["report"];
  EXPECT_EQ(typed["stage"], "complete");
  EXPECT_EQ(typed["state"], "unknown");
  ASSERT_EQ(typed["stack"].size(), 1u);
  EXPECT_EQ(typed["stack"][0]["file"], "");
  EXPECT_EQ(typed["stack"][0]["line"], 0);
}

TEST_F(StallWatchTest, SlowCallbacksBecomeEventsWithTheirNames) {
  const uint32_t fast = ring_->names().Append("app.fast");
  ASSERT_TRUE(ring_->Push(1'000'000, fast));        // 1 ms: not an event
  ASSERT_TRUE(ring_->Push(700'000'000, spin_));     // 700 ms: an event
  ASSERT_TRUE(ring_->Push(499'000'000, fast));      // below 500 ms
  Drain(std::chrono::milliseconds(50));
  const nlohmann::json events = nlohmann::json::parse(agent_.SlowJson())["events"];
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["callback"], "app.spin");
  EXPECT_DOUBLE_EQ(events[0]["duration_seconds"].get<double>(), 0.7);
  EXPECT_EQ(events[0]["pid"], 4242);
}

TEST(EventLogTest, KeepsTheNewestAndCountsWhatItDropped) {
  EventLog log(3);
  for (uint64_t i = 1; i <= 5; ++i) log.Add({{"id", i}});
  const nlohmann::json json = nlohmann::json::parse(log.RenderJson());
  EXPECT_EQ(json["dropped"], 2);
  ASSERT_EQ(json["events"].size(), 3u);
  EXPECT_EQ(json["events"][0]["id"], 5);  // newest first
  EXPECT_EQ(json["events"][2]["id"], 3);
  EXPECT_TRUE(log.Update("id", 4, {{"id", 4}, {"x", 1}}));
  EXPECT_FALSE(log.Update("id", 1, {{"id", 1}}));  // dropped already
  EXPECT_EQ(nlohmann::json::parse(log.RenderJson())["events"][1]["x"], 1);
}

}  // namespace
}  // namespace loopwatch::agent
