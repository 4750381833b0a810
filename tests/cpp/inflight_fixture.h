// The fixture of the agent-side tests of the in-flight slot (stall_watch_test.cpp, sampling_test.cpp):
// a test ring playing the shim (its in-flight slot, names, report region), mapped by a real Agent
// driven with explicit clock steps, and readers of the series and event logs it produces.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "agent.h"
#include "loopwatch/stall_report.h"
#include "metric_reader.h"
#include "test_ring.h"

namespace loopwatch::agent {

using testing::LabelSubset;
using testing::LockHolder;
using testing::MetricReader;
using testing::TempDir;
using testing::TestRing;
using testing::TestRingOptions;
using Clock = std::chrono::steady_clock;

inline const LabelSubset kLoop = {{"service", "checkout"}, {"pid", "4242"}, {"loop", "1"}};

// Ticks of the test ring's clock (CLOCK_MONOTONIC ns, the steady_clock) at `t`.
inline uint64_t Ticks(Clock::time_point t) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

// A test ring playing the shim, mapped by a real Agent; its in-flight slot, names and clock.
class InflightTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TestRingOptions options;
    options.geometry.report_capacity = 4096;
    options.version_minor = version_minor_;
    ring_ = std::make_unique<TestRing>(dir_.File("lw-4242-1-1.ring"), options);
    holder_ = std::make_unique<LockHolder>(ring_->path());
    spin_ = ring_->names().Append("app.spin");
    agent_.Scan(now_);
    ASSERT_EQ(agent_.rings().size(), 1u);
  }
  // The shim's side of the in-flight slot (stall_report.h).
  void StartCallback(Clock::time_point started, uint32_t name_id) {
    ring_->header()->inflight_name_id.store(name_id, std::memory_order_relaxed);
    ring_->header()->inflight_start_ticks.store(Ticks(started), std::memory_order_release);
  }
  // A callback that stalls long enough for the agent's first capture request: the fields of the
  // complete report that answers it.
  protocol::ReportFields StallUntilCaptureRequested() {
    StartCallback(now_, spin_);
    Drain(std::chrono::milliseconds(1500));
    protocol::ReportFields fields;
    fields.request = 1;
    fields.stage = protocol::ReportStage::kComplete;
    return fields;
  }
  void EndCallback() { ring_->header()->inflight_start_ticks.store(0, std::memory_order_release); }
  void Drain(std::chrono::milliseconds later) { agent_.Drain(now_ += later); }
  unsigned char* Report() { return reinterpret_cast<unsigned char*>(ring_->header()) + ring_->header()->report_offset; }

  MetricReader Read() { return MetricReader(*agent_.registry()); }
  double Stalls() { return Read().Value("loopwatch_stalls_total", kLoop).value_or(-1); }
  std::optional<double> Inflight(const std::string& callback) {
    LabelSubset labels = kLoop;
    labels["callback"] = callback;
    return Read().Value("loopwatch_callback_inflight_seconds", labels);
  }
  nlohmann::json StallEvents() { return nlohmann::json::parse(agent_.StallsJson())["events"]; }
  uint32_t Requests() { return ring_->header()->capture_request.load(); }

  uint16_t version_minor_ = protocol::kVersionMinor;  // set before SetUp for an older writer
  TempDir dir_;
  AgentOptions options_ = [] {
    AgentOptions o;
    o.stalls.stall_threshold_seconds = 1.0;
    o.stalls.name_threshold_seconds = 0.1;
    o.aggregation.slow_event_threshold_seconds = 0.5;
    return o;
  }();
  Agent agent_{[this] {
    AgentOptions o = options_;
    o.ring_dir = dir_.path();
    return o;
  }()};
  Clock::time_point now_ = Clock::now();
  std::unique_ptr<TestRing> ring_;
  std::unique_ptr<LockHolder> holder_;
  uint32_t spin_ = 0;
};

}  // namespace loopwatch::agent
