// Stall forensics and sampling for one ring: every watch tick (--slow.watch-interval) and drain cycle
// it reads the in-flight slot and sets loopwatch_callback_inflight_seconds (naming the callback once
// it has run past the slow threshold). A v1.3 ring's callback that runs past the arm threshold is
// armed (protocol/loopwatch/attribution.h): the shim's watchdog samples it until it ends, and the
// current attribution it publishes names the endpoint, handler and site on the in-flight gauge and
// in the stall report. When a callback passes the stall threshold it counts one stall, asks for the
// loop thread's stack (a v1.2 ring: capture_request + futex wake, stall_report.h; a v1.3 ring: the
// arm already asked for it with stall_after_us), logs the stall in the /api/stalls EventLog, and
// follows the report region until the stack arrives or the wait times out, then logs one line with
// the innermost frame.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>
#include <prometheus/histogram.h>
#include <prometheus/labels.h>

#include "loopwatch/attribution.h"

#include "stalls/event_log.h"
#include "aggregate/loop_families.h"
#include "drain/ring_clock.h"
#include "discover/ring_file.h"

namespace loopwatch::agent {

struct StallOptions {
  double stall_threshold_seconds = 1.0;  // --stall.threshold: count a stall and capture a stack
  double name_threshold_seconds = 0.1;   // the in-flight gauge names its callback from this age on
  double arm_threshold_seconds = 0.05;   // --slow.arm-threshold: sample a callback from this age on
  uint32_t sample_interval_us = 10'000;  // --slow.sample-interval
  uint32_t sample_limit = 1000;          // --slow.sample-limit: samples per callback at most
  std::chrono::seconds report_timeout{10};
};

// What the samples of one callback say, as text (the current attribution of a v1.3 ring).
struct AttributedCallback {
  uint64_t start_ticks = 0;  // the callback's in-flight start; 0: none yet
  std::string endpoint, handler, site, state, wchan;
  uint32_t samples = 0;
  double sampling_delay_seconds = 0;  // from the arm threshold to the first sample
};

// The fields a stall event or /api/slow event gets from an attribution: endpoint, handler, site,
// site_state (running / sleeping / ...), site_wchan (when the kernel told it), samples.
nlohmann::json AttributionFields(const AttributedCallback& attributed);

// Not thread safe: the drain thread only.
class StallWatch {
 public:
  using Clock = std::chrono::steady_clock;
  using NameOf = std::function<std::string(uint32_t name_id)>;  // a callback's label
  using TextOf = std::function<std::optional<std::string>(uint32_t name_id)>;  // a name's text; nullopt: not read yet

  StallWatch(RingFile& file, LoopFamilies& families, const prometheus::Labels& loop_labels, const StallOptions& options,
             EventLog& stalls);
  ~StallWatch();  // removes this loop's series
  StallWatch(const StallWatch&) = delete;
  StallWatch& operator=(const StallWatch&) = delete;

  // Every watch tick and drain cycle, after the name table was read. `name_of` gives a callback's
  // label, `text_of` a name's text ("" for 0).
  void Check(Clock::time_point now, const NameOf& name_of, const TextOf& text_of);

  double inflight_seconds() const { return inflight_seconds_; }
  // The in-flight gauge's callback label: the running callback's name once it is slow, else "".
  const std::string& inflight_callback() const { return inflight_label_; }
  // What the first sample of the callback running now said (the gauge's labels); null before it.
  const AttributedCallback* inflight_attribution() const {
    return inflight_attributed_start_ != 0 ? &first_attribution_ : nullptr;
  }
  uint64_t stalls() const { return stalls_; }
  bool can_sample() const { return can_sample_; }
  uint64_t arms() const { return arms_; }
  // The latest callback the watchdog sampled (start_ticks 0: none yet).
  const AttributedCallback& attribution() const { return attributed_; }

 private:
  void SetGauge(const std::string& callback, const AttributedCallback* attributed, double age);
  void ReadAttribution(const TextOf& text_of);
  void Arm(uint64_t start_ticks);
  void Ring(const protocol::ArmRequest& arm);
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
  const bool can_sample_;   // protocol >= 1.3: arm requests and the current attribution

  prometheus::Gauge* inflight_series_ = nullptr;
  std::string inflight_label_;  // the callback label of inflight_series_
  // The start ticks of the callback whose first sample gave inflight_series_ its endpoint, handler and
  // site labels (first_attribution_); 0: those labels are empty.
  uint64_t inflight_attributed_start_ = 0;
  prometheus::Histogram& sampling_delay_;
  prometheus::Counter* stalls_series_;
  prometheus::Counter* wakeups_series_;
  uint64_t wakeups_seen_ = 0;
  double inflight_seconds_ = 0;
  uint64_t stalls_ = 0;

  // The current stall (stall_start_ticks_ != 0 once one was seen; it stays to avoid re-counting).
  uint64_t stall_start_ticks_ = 0;
  // The callback armed last (0: none) and the request that armed it.
  uint64_t armed_start_ticks_ = 0;
  uint32_t armed_request_ = 0;
  uint64_t arms_ = 0;
  AttributedCallback attributed_;        // the latest sample's
  AttributedCallback first_attribution_;  // the first sample's of the same callback (the gauge's labels)
  uint32_t attribution_seq_ = 0;  // the seqlock value attributed_ was read at
  bool stall_running_ = false;
  bool awaiting_report_ = false;
  uint32_t request_ = 0;
  Clock::time_point requested_at_{};
  nlohmann::json event_;
};

}  // namespace loopwatch::agent
