// Stall forensics for one ring: every drain cycle it reads the in-flight slot and sets
// loopwatch_callback_inflight_seconds (naming the callback once it has run past the slow threshold).
// When a callback passes the stall threshold it counts one stall, asks the shim's watchdog thread for
// the loop thread's stack (capture_request + futex wake, stall_report.h), logs the stall in the
// /api/stalls EventLog, and follows the report region until the stack arrives or the wait times out,
// then logs one line with the innermost frame.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>
#include <prometheus/labels.h>

#include "event_log.h"
#include "loop_families.h"
#include "ring_clock.h"
#include "ring_file.h"

namespace loopwatch::agent {

struct StallOptions {
  double stall_threshold_seconds = 1.0;  // --stall.threshold: count a stall and capture a stack
  double name_threshold_seconds = 0.1;   // the in-flight gauge names its callback from this age on
  std::chrono::seconds report_timeout{10};
};

// Not thread safe: the drain thread only.
class StallWatch {
 public:
  using Clock = std::chrono::steady_clock;
  using NameOf = std::function<std::string(uint32_t name_id)>;

  StallWatch(RingFile& file, LoopFamilies& families, const prometheus::Labels& loop_labels, const StallOptions& options,
             EventLog& stalls);
  ~StallWatch();  // removes this loop's series
  StallWatch(const StallWatch&) = delete;
  StallWatch& operator=(const StallWatch&) = delete;

  // Once per drain cycle, after the name table was read.
  void Check(Clock::time_point now, const NameOf& name_of);

  double inflight_seconds() const { return inflight_seconds_; }
  // The in-flight gauge's callback label: the running callback's name once it is slow, else "".
  const std::string& inflight_callback() const { return inflight_label_; }
  uint64_t stalls() const { return stalls_; }

 private:
  void SetGauge(const std::string& callback, double age);
  void BeginStall(Clock::time_point now, uint64_t start_ticks, const std::string& callback, double age);
  void FollowReport(Clock::time_point now, const NameOf& name_of);
  void Publish();

  RingFile& file_;
  LoopFamilies& families_;
  const prometheus::Labels loop_labels_;
  const StallOptions options_;
  EventLog& stalls_log_;
  const RingClock clock_;
  const bool can_capture_;  // protocol >= 1.2 with a usable report region

  prometheus::Gauge* inflight_series_ = nullptr;
  std::string inflight_label_;  // the callback label of inflight_series_
  prometheus::Counter* stalls_series_;
  prometheus::Counter* wakeups_series_;
  uint64_t wakeups_seen_ = 0;
  double inflight_seconds_ = 0;
  uint64_t stalls_ = 0;

  // The current stall (stall_start_ticks_ != 0 once one was seen; it stays to avoid re-counting).
  uint64_t stall_start_ticks_ = 0;
  bool stall_running_ = false;
  bool awaiting_report_ = false;
  uint32_t request_ = 0;
  Clock::time_point requested_at_{};
  nlohmann::json event_;
};

}  // namespace loopwatch::agent
