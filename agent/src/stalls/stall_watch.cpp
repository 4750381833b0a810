// In-flight gauge, stall counting, capture requests and stall reports; see stall_watch.h.
#include "stalls/stall_watch.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include <spdlog/spdlog.h>

#include "aggregate/blocked_time.h"
#include "expose/label_text.h"
#include "loopwatch/futex.h"
#include "loopwatch/stall_report.h"

namespace loopwatch::agent {
namespace {

using protocol::ReportStage;

std::atomic<uint64_t> g_next_stall_id{1};  // agent-wide, so /api/stalls entries have unique ids

prometheus::Labels InflightLabels(prometheus::Labels labels, const std::string& callback,
                                  const AttributedCallback* attributed) {
  labels.emplace("callback", callback);
  labels.emplace("endpoint", attributed != nullptr ? attributed->endpoint : std::string());
  labels.emplace("handler", attributed != nullptr ? attributed->handler : std::string());
  labels.emplace("site", attributed != nullptr ? attributed->site : std::string());
  return labels;
}

// /proc/<pid>/stat state letters, in words an SRE reads.
const char* StateName(const std::string& state) {
  if (state == "R") return "running";
  if (state == "S") return "sleeping";
  if (state == "D") return "waiting on I/O (uninterruptible)";
  if (state == "T" || state == "t") return "stopped";
  if (state == "Z" || state == "X") return "exited";
  return "unknown";
}

const char* StageName(ReportStage stage) {
  switch (stage) {
    case ReportStage::kThreadStateOnly: return "thread_state_only";
    case ReportStage::kComplete: return "complete";
    case ReportStage::kFailed: return "failed";
  }
  return "invalid";
}

// The string at `key` of a JSON object, or "" when it is missing or not a string (never throws).
std::string StringAt(const nlohmann::json& object, const char* key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? SanitizeUtf8(it->get<std::string>()) : std::string();
}

// Copies what the agent understands out of the shim's report text (untrusted JSON: any field may be
// missing or of another type; nothing here may throw).
void MergeReportText(const std::string& text, nlohmann::json& report) {
  const nlohmann::json parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object()) {
    report["error"] = "unreadable report";
    return;
  }
  const auto thread = parsed.find("thread");
  if (thread != parsed.end() && thread->is_object()) {
    const std::string state = StringAt(*thread, "state");
    report["thread_state"] = state;
    report["state"] = StateName(state);
    if (const std::string wchan = StringAt(*thread, "wchan"); !wchan.empty()) report["wchan"] = wchan;
  }
  nlohmann::json stack = nlohmann::json::array();
  const auto frames = parsed.find("frames");
  if (frames != parsed.end() && frames->is_array()) {
    for (const nlohmann::json& frame : *frames) {
      if (!frame.is_object()) continue;
      const auto line = frame.find("line");
      stack.push_back({{"file", StringAt(frame, "file")},
                       {"line", line != frame.end() && line->is_number_integer() ? line->get<int64_t>() : 0},
                       {"function", StringAt(frame, "function")}});
    }
  }
  if (!stack.empty()) {
    const nlohmann::json& top = stack.front();  // innermost first
    report["innermost"] = top["file"].get<std::string>() + ":" + std::to_string(top["line"].get<int64_t>()) + " in " +
                          top["function"].get<std::string>();
  }
  report["stack"] = std::move(stack);
  if (const std::string error = StringAt(parsed, "error"); !error.empty()) report["error"] = error;
}

}  // namespace

nlohmann::json AttributionFields(const AttributedCallback& attributed) {
  nlohmann::json fields = {{"endpoint", attributed.endpoint},
                           {"handler", attributed.handler},
                           {"site", attributed.site},
                           {"site_state", attributed.state},
                           {"samples", attributed.samples},
                           {"sampling_delay_seconds", attributed.sampling_delay_seconds}};
  if (!attributed.wchan.empty()) fields["site_wchan"] = attributed.wchan;
  return fields;
}

StallWatch::StallWatch(RingFile& file, LoopFamilies& families, const prometheus::Labels& loop_labels,
                       const StallOptions& options, EventLog& stalls)
    : file_(file),
      families_(families),
      loop_labels_(loop_labels),
      options_(options),
      stalls_log_(stalls),
      clock_(file.header()),
      can_capture_(file.header().version_minor >= 2 && file.header().report_capacity >= protocol::kMinReportCapacity),
      can_sample_(can_capture_ && file.header().version_minor >= 3),
      sampling_delay_(families.sampling_delay),
      stalls_series_(&families.stalls.Add(loop_labels)),
      wakeups_series_(&families.watchdog_wakeups.Add(loop_labels)) {
  SetGauge("", nullptr, 0);
}

StallWatch::~StallWatch() {
  families_.inflight_seconds.Remove(inflight_series_);
  families_.stalls.Remove(stalls_series_);
  families_.watchdog_wakeups.Remove(wakeups_series_);
}

void StallWatch::SetGauge(const std::string& callback, const AttributedCallback* attributed, double age) {
  const uint64_t attributed_start = attributed != nullptr ? attributed->start_ticks : 0;
  if (inflight_series_ == nullptr || callback != inflight_label_ || attributed_start != inflight_attributed_start_) {
    // One series per loop: the old labels go before the new ones come, so a scrape sees at most
    // one in-flight value per loop.
    if (inflight_series_ != nullptr) families_.inflight_seconds.Remove(inflight_series_);
    inflight_series_ = &families_.inflight_seconds.Add(InflightLabels(loop_labels_, callback, attributed));
    inflight_label_ = callback;
    inflight_attributed_start_ = attributed_start;
  }
  inflight_series_->Set(age);
}

void StallWatch::ReadAttribution(const TextOf& text_of) {
  const protocol::RingHeader& live = file_.live_header();
  protocol::Attribution a;
  // Relaxed peek first: most checks find nothing new, and ReadAttribution needs a stable seq anyway.
  const uint32_t seq = live.attribution_seq.load(std::memory_order_relaxed);
  if (seq == attribution_seq_) return;
  if (!protocol::ReadAttribution(live, &a) || a.samples == 0) return;
  // The watchdog appends names before it publishes them here, but the names may have been read just
  // before: then this attribution is taken at the next look, once they are known.
  const std::optional<std::string> endpoint = text_of(a.endpoint), handler = text_of(a.handler),
                                   site = text_of(a.site), wchan = text_of(a.wchan);
  if (!endpoint || !handler || !site || !wchan) return;
  attribution_seq_ = seq;  // what was read is at least this new
  const bool first = a.start_ticks != attributed_.start_ticks;
  // How long after the arm threshold the first sample was taken.
  const double armed_ns = clock_.MonoNs(a.start_ticks) + options_.arm_threshold_seconds * 1e9;
  const double delay = std::max(0.0, (static_cast<double>(a.first_sample_mono_ns) - armed_ns) * 1e-9);
  if (first && a.start_ticks == armed_start_ticks_) sampling_delay_.Observe(delay);
  attributed_ = {a.start_ticks, *endpoint, *handler, *site, BlockedTime::StateLabel(a.state), *wchan, a.samples, delay};
  // The in-flight gauge keeps what the first sample said: its labels (and an alert's) stay put for
  // the callback's life even when later samples find it on another line (the stall report has those).
  if (first) first_attribution_ = attributed_;
}

void StallWatch::Ring(const protocol::ArmRequest& arm) {
  protocol::RingHeader& live = file_.live_header();
  // A v1.2 ring leaves the arm fields reserved: storing zeros there changes nothing it reads.
  if (can_sample_) protocol::StoreArm(live, arm);
  // Release: the arm fields, and the agent's earlier reads of the report region, happen before the
  // watchdog may act on the request.
  request_ = live.capture_request.load(std::memory_order_relaxed) + 1;
  if (request_ == 0) request_ = 1;  // 0 is "never asked"
  live.capture_request.store(request_, std::memory_order_release);
  protocol::FutexWakeAll(&live.capture_request);
}

void StallWatch::Arm(uint64_t start_ticks) {
  const double stall_after_us = options_.stall_threshold_seconds * 1e6;
  Ring({.start_ticks = start_ticks,
        .sample_interval_us = options_.sample_interval_us,
        .sample_limit = options_.sample_limit,
        .stall_after_us = stall_after_us < 4e9 ? static_cast<uint32_t>(stall_after_us) : 4'000'000'000u});
  armed_start_ticks_ = start_ticks;
  armed_request_ = request_;
  ++arms_;
}

void StallWatch::Check(Clock::time_point now, const NameOf& name_of, const TextOf& text_of) {
  const protocol::RingHeader& live = file_.live_header();
  if (can_capture_) {
    // Relaxed: a statistic the watchdog bumps; mirrored by deltas like the drop counter.
    const uint64_t wakeups = live.watchdog_wakeups.load(std::memory_order_relaxed);
    if (wakeups > wakeups_seen_) wakeups_series_->Increment(static_cast<double>(wakeups - wakeups_seen_));
    wakeups_seen_ = wakeups;
  }
  uint64_t start = 0;
  uint32_t name_id = 0;
  const bool busy = protocol::ReadInflight(live, &start, &name_id);
  double age = 0;
  if (busy) {
    age = (RingClock::MonoNs(now) - clock_.MonoNs(start)) * 1e-9;
    if (age < 0) age = 0;  // the writer's clock read a little ahead of ours
  }
  inflight_seconds_ = age;
  // Arm before the stall check: on a v1.3 ring the arm also asks for the stall report.
  // (An arm threshold set above the stall threshold arms at the stall.)
  if (busy && can_sample_ && start != armed_start_ticks_ &&
      age >= std::min(options_.arm_threshold_seconds, options_.stall_threshold_seconds)) {
    Arm(start);
  }
  if (can_sample_) ReadAttribution(text_of);
  const bool attributed = busy && attributed_.start_ticks == start;
  const bool named = busy && age >= options_.name_threshold_seconds;
  const std::string callback = named ? name_of(name_id) : std::string();
  SetGauge(callback, attributed ? &first_attribution_ : nullptr, age);
  if (stall_running_ && attributed) event_.update(AttributionFields(attributed_));

  if (stall_running_ && (!busy || start != stall_start_ticks_)) {
    stall_running_ = false;  // the stalled callback returned
    event_["finished"] = true;
    Publish();
  }
  if (busy && start != stall_start_ticks_ && age >= options_.stall_threshold_seconds) {
    BeginStall(now, start, callback, age);
  } else if (stall_running_) {
    event_["running_seconds"] = age;
    Publish();
  }
  if (awaiting_report_) FollowReport(now, name_of);
}

void StallWatch::BeginStall(Clock::time_point now, uint64_t start_ticks, const std::string& callback, double age) {
  ++stalls_;
  stalls_series_->Increment();
  stall_start_ticks_ = start_ticks;
  stall_running_ = true;
  const double started_mono_ns = clock_.MonoNs(start_ticks);
  event_ = {{"id", g_next_stall_id.fetch_add(1, std::memory_order_relaxed)},
            {"service", loop_labels_.at("service")},
            {"pid", file_.header().pid},
            {"loop", file_.header().loop_id},
            {"callback", callback},
            {"started_unix", RingClock::UnixSeconds(started_mono_ns)},
            {"detected_unix", RingClock::UnixSeconds(RingClock::MonoNs(now))},
            {"running_seconds", age},
            {"finished", false},
            {"report", {{"stage", can_capture_ ? "requested" : "unsupported"}}}};
  if (attributed_.start_ticks == start_ticks) event_.update(AttributionFields(attributed_));
  stalls_log_.Add(event_);
  if (!can_capture_) {
    spdlog::warn("stall: service={} pid={} loop={} callback \"{}\" running for {:.1f} s (the ring's writer cannot capture stacks)",
                 ForLog(loop_labels_.at("service")), file_.header().pid, file_.header().loop_id, ForLog(callback), age);
    return;
  }
  if (can_sample_ && armed_start_ticks_ == start_ticks) {
    request_ = armed_request_;  // the arm asked for the report at the stall threshold already
  } else {
    Ring({});  // a v1.2 request: the report at once
  }
  awaiting_report_ = true;
  requested_at_ = now;
}

void StallWatch::FollowReport(Clock::time_point now, const NameOf& name_of) {
  protocol::ReportFields fields;
  std::string text;
  const auto* region = static_cast<const unsigned char*>(file_.report_region());
  const bool have = protocol::ReadReport(region, file_.header().report_capacity, &fields, &text) && fields.request == request_;
  nlohmann::json& report = event_["report"];
  if (have) {
    const ReportStage stage = fields.stage;
    if (report.value("stage", std::string()) == StageName(stage) && stage != ReportStage::kThreadStateOnly) return;
    report = {{"stage", StageName(stage)}, {"captured_unix", static_cast<double>(fields.captured_unix_ns) * 1e-9}};
    if (stage == ReportStage::kComplete) report["gil_wait_seconds"] = static_cast<double>(fields.gil_wait_ns) * 1e-9;
    if (fields.callback_start_ticks != stall_start_ticks_) {
      report["note"] = "the stalled callback had returned when the stack was taken";
      report["running_callback"] = fields.callback_start_ticks != 0 ? name_of(fields.name_id) : std::string();
    }
    MergeReportText(text, report);
    if (stage == ReportStage::kThreadStateOnly) {
      Publish();
      if (now - requested_at_ < options_.report_timeout) return;
      report["error"] = "no stack: the loop thread did not release the GIL within " +
                        std::to_string(options_.report_timeout.count()) + " s";
    }
  } else if (now - requested_at_ < options_.report_timeout) {
    return;
  } else {
    report["stage"] = "no_answer";
    report["error"] = "no report from the shim's watchdog within " + std::to_string(options_.report_timeout.count()) + " s";
  }
  awaiting_report_ = false;
  Publish();
  spdlog::warn("stall: service={} pid={} loop={} callback \"{}\" running for {:.1f} s; thread {} ({}); at {}",
               ForLog(loop_labels_.at("service")), file_.header().pid, file_.header().loop_id,
               ForLog(event_.value("callback", std::string())), event_.value("running_seconds", 0.0),
               ForLog(report.value("thread_state", std::string("?"))), report.value("state", std::string("unknown")),
               ForLog(report.value("innermost", report.value("error", std::string("no stack")))));
}

void StallWatch::Publish() { stalls_log_.Update("id", event_["id"].get<uint64_t>(), event_); }

}  // namespace loopwatch::agent
