// Series lifecycle, batch flushing and top-K series moves of one loop; see loop_metrics.h.
#include "aggregate/loop_metrics.h"

#include <string>

#include "expose/label_text.h"

namespace loopwatch::agent {
namespace {

constexpr std::string_view kOtherLabel = "other";

std::string_view KindLabel(protocol::LoopKind kind) {
  return kind == protocol::LoopKind::kUvloop ? "uvloop" : "asyncio";
}

prometheus::Labels LoopLabels(const protocol::HeaderSnapshot& header) {
  return {{"service", SanitizeUtf8(header.service_name())},
          {"pid", std::to_string(header.pid)},
          {"loop", std::to_string(header.loop_id)}};
}

prometheus::Labels With(prometheus::Labels labels, std::initializer_list<std::pair<const std::string, std::string>> extra) {
  labels.insert(extra);
  return labels;
}

// Moves a local bucket array into a histogram series and zeroes it.
template <std::size_t N>
void Observe(prometheus::Histogram* series, std::array<uint32_t, N>& counts, double sum, std::vector<double>& scratch) {
  for (std::size_t i = 0; i < N; ++i) {
    scratch[i] = counts[i];
    counts[i] = 0;
  }
  series->ObserveMultiple(scratch, sum);
}

}  // namespace

LoopMetrics::LoopMetrics(LoopFamilies& families, const protocol::HeaderSnapshot& header,
                         const AggregationOptions& options, EventLog* slow_log)
    : families_(families),
      loop_labels_(LoopLabels(header)),
      ns_per_tick_(header.clock_ns_per_tick),
      slow_ticks_(MinTicksAtLeast(options.slow_threshold_seconds, header)),
      slow_log_(slow_log),
      slow_event_ticks_(slow_log != nullptr ? MinTicksAtLeast(options.slow_event_threshold_seconds, header) : ~uint64_t{0}),
      clock_(header),
      pid_(header.pid),
      loop_id_(header.loop_id),
      duration_index_(BucketIndex::ForSeconds(SecondsBuckets(), header)),
      lag_index_(BucketIndex::ForSeconds(SecondsBuckets(), header)),
      handles_index_(BucketIndex::ForCounts(HandlesBuckets())),
      top_k_(options.top_k),
      duration_series_(&families.callback_duration.Add(loop_labels_, SecondsBuckets())),
      lag_series_(&families.loop_lag.Add(loop_labels_, SecondsBuckets())),
      handles_series_(&families.loop_handles.Add(loop_labels_, HandlesBuckets())),
      callbacks_series_(&families.callbacks.Add(loop_labels_)),
      slow_series_(&families.slow_callbacks.Add(loop_labels_)),
      dropped_series_(&families.dropped_samples.Add(loop_labels_)),
      busy_series_(&families.busy_seconds.Add(loop_labels_)),
      evictions_series_(&families.callback_name_evictions.Add(loop_labels_)),
      info_series_(&families.loop_info.Add(With(loop_labels_, {{"kind", std::string(KindLabel(header.loop_kind))},
                                                               {"thread", std::to_string(header.loop_thread_id)}}))),
      named_series_(std::size_t{options.top_k} + 1, nullptr),
      named_batches_(std::size_t{options.top_k} + 1),
      seconds_scratch_(kSecondsBucketCount),
      handles_scratch_(kHandlesBucketCount),
      recent_(header.clock_ns_per_tick * 1e-9) {
  info_series_->Set(1);
  seconds_per_tick_ = header.clock_ns_per_tick * 1e-9;
  named_series_[CallbackTopK::kOtherPosition] =
      &families_.named_callback_duration.Add(NamedLabels(CallbackTopK::kOtherPosition), SecondsBuckets());
  touched_.reserve(named_batches_.size());
}

LoopMetrics::~LoopMetrics() {
  families_.callback_duration.Remove(duration_series_);
  families_.loop_lag.Remove(lag_series_);
  families_.loop_handles.Remove(handles_series_);
  families_.callbacks.Remove(callbacks_series_);
  families_.slow_callbacks.Remove(slow_series_);
  families_.dropped_samples.Remove(dropped_series_);
  families_.busy_seconds.Remove(busy_series_);
  families_.callback_name_evictions.Remove(evictions_series_);
  families_.loop_info.Remove(info_series_);
  for (prometheus::Histogram* series : named_series_) {
    if (series != nullptr) families_.named_callback_duration.Remove(series);
  }
}

void LoopMetrics::AddName(uint32_t id, std::string_view name) {
  if (id != protocol::kFirstNameId + name_labels_.size()) return;  // NameTableReader guarantees order
  name_labels_.push_back(UniqueLabel(name, id));
  name_texts_.push_back(SanitizeUtf8(name));
  top_k_.AddName(id);
}

std::optional<std::string> LoopMetrics::TextOf(uint32_t id) const {
  if (id == 0) return std::string();
  if (id < protocol::kFirstNameId) return std::string(kOtherLabel);
  if (id - protocol::kFirstNameId >= name_texts_.size()) return std::nullopt;
  return name_texts_[id - protocol::kFirstNameId];
}

void LoopMetrics::NoteAttribution(uint64_t start_ticks, nlohmann::json fields) {
  for (auto& [start, remembered] : attributions_) {
    if (start == start_ticks) {
      remembered = std::move(fields);  // a later sample of the same callback
      return;
    }
  }
  if (attributions_.size() == kRememberedAttributions) attributions_.pop_front();
  attributions_.emplace_back(start_ticks, std::move(fields));
}

// Two series of one family with equal labels would be one object in prometheus-cpp, and removing
// one would free the other: every name gets a label value no other name of this loop has.
std::string LoopMetrics::UniqueLabel(std::string_view name, uint32_t id) {
  std::string label = SanitizeUtf8(name);
  if (label.empty()) label = "<unnamed>";
  while (label == kOtherLabel || used_labels_.count(label) != 0) label += " #" + std::to_string(id);
  used_labels_.insert(label);
  return label;
}

std::string LoopMetrics::NameOf(uint32_t id) const {
  if (id < protocol::kFirstNameId || id - protocol::kFirstNameId >= name_labels_.size()) return std::string(kOtherLabel);
  return name_labels_[id - protocol::kFirstNameId];
}

void LoopMetrics::RecordSlowEvent(const protocol::Sample& sample) {
  const char* kind = sample.kind() == static_cast<uint8_t>(protocol::SampleKind::kTimer) ? "timer"
                     : sample.kind() == static_cast<uint8_t>(protocol::SampleKind::kIo) ? "io"
                                                                                        : "ready";
  nlohmann::json event = {{"service", loop_labels_.at("service")},
                           {"pid", pid_},
                           {"loop", loop_id_},
                           {"callback", NameOf(sample.name_id)},
                           {"kind", kind},
                           {"duration_seconds", TicksToSeconds(static_cast<double>(sample.duration_ticks))},
                           {"started_unix", RingClock::UnixSeconds(clock_.MonoNs(sample.start_ticks))}};
  for (const auto& [start, fields] : attributions_) {
    if (start == sample.start_ticks) event.update(fields);  // endpoint, handler, site of its samples
  }
  slow_log_->Add(std::move(event));
}

prometheus::Labels LoopMetrics::NamedLabels(uint32_t position) const {
  std::string callback(kOtherLabel);
  if (position != CallbackTopK::kOtherPosition) callback = name_labels_[top_k_.MemberAt(position) - protocol::kFirstNameId];
  return With(loop_labels_, {{"callback", std::move(callback)}});
}

void LoopMetrics::FlushBatch() {
  if (batch_samples_ == 0) return;
  recent_.AddBatch(batch_samples_, batch_slow_, lag_counts_, duration_sum_ticks_);  // before Observe zeroes them
  callbacks_series_->Increment(batch_samples_);
  if (batch_slow_ != 0) slow_series_->Increment(batch_slow_);
  Observe(duration_series_, duration_counts_, TicksToSeconds(duration_sum_ticks_), seconds_scratch_);
  if (batch_lag_samples_ != 0) Observe(lag_series_, lag_counts_, TicksToSeconds(lag_sum_ticks_), seconds_scratch_);
  Observe(handles_series_, handles_counts_, handles_sum_, handles_scratch_);
  for (uint32_t position : touched_) {
    NamedBatch& named = named_batches_[position];
    if (named_series_[position] == nullptr) {
      named_series_[position] = &families_.named_callback_duration.Add(NamedLabels(position), SecondsBuckets());
    }
    Observe(named_series_[position], named.counts, TicksToSeconds(named.sum_ticks), seconds_scratch_);
    named.sum_ticks = 0;
    named.count = 0;
  }
  touched_.clear();
  samples_ += batch_samples_;
  duration_sum_ticks_ = lag_sum_ticks_ = handles_sum_ = 0;
  batch_samples_ = batch_slow_ = batch_lag_samples_ = 0;
}

void LoopMetrics::MirrorBusy(uint64_t busy_ticks) {
  if (busy_ticks <= busy_ticks_) return;  // the writer only ever increases it
  busy_series_->Increment(static_cast<double>(busy_ticks - busy_ticks_) * seconds_per_tick_);
  busy_ticks_ = busy_ticks;
}

void LoopMetrics::MirrorDropped(uint64_t dropped) {
  if (dropped <= dropped_) return;  // the writer only ever increases it
  dropped_series_->Increment(static_cast<double>(dropped - dropped_));
  dropped_ = dropped;
}

void LoopMetrics::MaybeRerank(std::chrono::steady_clock::time_point now) {
  if (now - last_rerank_ < kRerankPeriod) return;
  last_rerank_ = now;
  FlushBatch();  // positions are about to change
  for (const CallbackTopK::Swap& swap : top_k_.Rerank()) {
    if (named_series_[swap.position] != nullptr) families_.named_callback_duration.Remove(named_series_[swap.position]);
    // The newcomer's series starts at zero; its history stays in "other".
    named_series_[swap.position] = &families_.named_callback_duration.Add(NamedLabels(swap.position), SecondsBuckets());
    evictions_series_->Increment();
    ++evictions_;
  }
}

void LoopMetrics::MaybeCloseRecentWindow(std::chrono::steady_clock::time_point now) {
  recent_.MaybeClose(now, busy_ticks_, top_k_, [this](uint32_t id) { return NameOf(id); });
}

std::size_t LoopMetrics::named_series() const {
  std::size_t n = 0;
  for (const prometheus::Histogram* series : named_series_) n += series != nullptr ? 1 : 0;
  return n;
}

}  // namespace loopwatch::agent
