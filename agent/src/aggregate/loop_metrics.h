// The Prometheus series of one loop (one ring), and the local pre-bucketing that keeps the drain
// loop cheap: samples are counted into plain arrays (Add) and pushed into the series once per batch
// (FlushBatch: one ObserveMultiple per histogram, one Increment per counter). The destructor removes
// every series of the loop from its family, which is how a retired ring disappears from /metrics.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "aggregate/bucket_index.h"
#include "aggregate/buckets.h"
#include "aggregate/callback_top_k.h"
#include "stalls/event_log.h"
#include "aggregate/loop_families.h"
#include "aggregate/recent_window.h"
#include "drain/ring_clock.h"
#include "loopwatch/header_check.h"
#include "loopwatch/layout.h"

namespace loopwatch::agent {

struct AggregationOptions {
  uint32_t top_k = 20;                  // named series per loop, besides "other"
  double slow_threshold_seconds = 0.1;  // loopwatch_slow_callbacks_total counts durations >= this
  double slow_event_threshold_seconds = 0.5;  // durations >= this are recorded for /api/slow
};

// Not thread safe: used on the drain thread only. (The series it owns are read by scrapes
// concurrently; prometheus-cpp metrics are thread safe.)
class LoopMetrics {
 public:
  static constexpr std::chrono::seconds kRerankPeriod{1};

  // `slow_log` (may be null) receives one event per callback of at least slow_event_threshold_seconds.
  LoopMetrics(LoopFamilies& families, const protocol::HeaderSnapshot& header, const AggregationOptions& options,
              EventLog* slow_log = nullptr);
  ~LoopMetrics();
  LoopMetrics(const LoopMetrics&) = delete;
  LoopMetrics& operator=(const LoopMetrics&) = delete;

  // A record of the ring's name table; ids arrive consecutively from kFirstNameId.
  void AddName(uint32_t id, std::string_view name);

  // Hot path: counts one sample into the local batch.
  void Add(const protocol::Sample& sample) {
    const uint64_t duration = sample.duration_ticks;
    const uint32_t bucket = duration_index_.Index(duration);
    recent_.NoteDuration(duration);
    ++duration_counts_[bucket];
    duration_sum_ticks_ += static_cast<double>(duration);
    batch_slow_ += duration >= slow_ticks_ ? 1 : 0;
    if (duration >= slow_event_ticks_ && slow_log_ != nullptr) [[unlikely]] RecordSlowEvent(sample);
    if (sample.lag_ticks != protocol::kLagUnknown) {
      ++lag_counts_[lag_index_.Index(sample.lag_ticks)];
      recent_.NoteLag(sample.lag_ticks);
      lag_sum_ticks_ += static_cast<double>(sample.lag_ticks);
      ++batch_lag_samples_;
    }
    const uint32_t handles = sample.handles();
    ++handles_counts_[handles_index_.Index(handles)];
    handles_sum_ += handles;
    NamedBatch& named = named_batches_[top_k_.Record(sample.name_id, duration)];
    if (named.count++ == 0) touched_.push_back(static_cast<uint32_t>(&named - named_batches_.data()));
    ++named.counts[bucket];
    named.sum_ticks += static_cast<double>(duration);
    ++batch_samples_;
  }

  // Pushes the local batch into the series and clears it. Call at least every 2^32 samples.
  void FlushBatch();
  // Makes loopwatch_dropped_samples_total follow the header's cumulative `dropped` word.
  void MirrorDropped(uint64_t dropped);
  // Makes loopwatch_loop_busy_seconds_total follow the header's cumulative `busy_ticks` (v1.1).
  void MirrorBusy(uint64_t busy_ticks);
  // Re-ranks the callback top-K if the last re-rank is older than kRerankPeriod (flushes first).
  void MaybeRerank(std::chrono::steady_clock::time_point now);
  // Closes the live page's one-second window when it is due (after a drain's FlushBatch and MirrorBusy;
  // see recent_window.h).
  void MaybeCloseRecentWindow(std::chrono::steady_clock::time_point now);
  // The last closed window (null before the first).
  std::shared_ptr<const RecentActivity> recent() const { return recent_.latest(); }

  // The label value of a name id ("other" for kNameIdOther and ids not read yet).
  std::string NameOf(uint32_t id) const;
  // The text of a name id as the shim wrote it (made valid UTF-8): "" for 0, "other" for
  // kNameIdOther, nullopt for an id not read yet. For names that are not callback labels (sites,
  // endpoints).
  std::optional<std::string> TextOf(uint32_t id) const;
  // The endpoint, handler and site of a callback the shim sampled (stalls/stall_watch.h), kept for
  // the callback's /api/slow event, which the drain records after the callback ended. The last
  // kRememberedAttributions are kept.
  void NoteAttribution(uint64_t start_ticks, nlohmann::json fields);
  const prometheus::Labels& loop_labels() const { return loop_labels_; }
  uint64_t samples() const { return samples_; }
  uint64_t dropped() const { return dropped_; }
  uint32_t names() const { return static_cast<uint32_t>(name_labels_.size()); }
  uint64_t evictions() const { return evictions_; }
  // Named series that exist now, "other" included (always <= top_k + 1).
  std::size_t named_series() const;
  const CallbackTopK& top_k() const { return top_k_; }

 private:
  void RecordSlowEvent(const protocol::Sample& sample);

  struct NamedBatch {
    std::array<uint32_t, kSecondsBucketCount> counts{};
    double sum_ticks = 0;
    uint32_t count = 0;
  };

  prometheus::Labels NamedLabels(uint32_t position) const;
  std::string UniqueLabel(std::string_view name, uint32_t id);
  double TicksToSeconds(double ticks) const { return ticks * ns_per_tick_ * 1e-9; }

  LoopFamilies& families_;
  const prometheus::Labels loop_labels_;  // service, pid, loop
  const double ns_per_tick_;
  const uint64_t slow_ticks_;
  EventLog* const slow_log_;
  const uint64_t slow_event_ticks_;  // ~0 without a slow_log
  const RingClock clock_;
  const int32_t pid_;
  const uint32_t loop_id_;
  const BucketIndex duration_index_;
  const BucketIndex lag_index_;
  const BucketIndex handles_index_;
  CallbackTopK top_k_;

  // Series (owned by the families; removed in the destructor).
  prometheus::Histogram* duration_series_;
  prometheus::Histogram* lag_series_;
  prometheus::Histogram* handles_series_;
  prometheus::Counter* callbacks_series_;
  prometheus::Counter* slow_series_;
  prometheus::Counter* dropped_series_;
  prometheus::Counter* busy_series_;
  prometheus::Counter* evictions_series_;
  prometheus::Gauge* info_series_;
  std::vector<prometheus::Histogram*> named_series_;  // index = top-K position; nullptr = not created yet

  // Names: label value per id (unique within the loop, never "other"), and the text as written.
  std::vector<std::string> name_labels_;  // index = id - kFirstNameId
  std::vector<std::string> name_texts_;   // index = id - kFirstNameId
  static constexpr std::size_t kRememberedAttributions = 64;
  std::deque<std::pair<uint64_t, nlohmann::json>> attributions_;  // (callback start ticks, fields)
  std::unordered_set<std::string> used_labels_;

  // The local batch.
  std::array<uint32_t, kSecondsBucketCount> duration_counts_{};
  std::array<uint32_t, kSecondsBucketCount> lag_counts_{};
  std::array<uint32_t, kHandlesBucketCount> handles_counts_{};
  double duration_sum_ticks_ = 0;
  double lag_sum_ticks_ = 0;
  double handles_sum_ = 0;
  uint32_t batch_samples_ = 0;
  uint32_t batch_slow_ = 0;
  uint32_t batch_lag_samples_ = 0;
  std::vector<NamedBatch> named_batches_;  // index = top-K position
  std::vector<uint32_t> touched_;          // positions with a non-empty NamedBatch
  std::vector<double> seconds_scratch_;    // ObserveMultiple wants a vector<double>
  std::vector<double> handles_scratch_;

  uint64_t samples_ = 0;
  uint64_t dropped_ = 0;
  uint64_t busy_ticks_ = 0;
  double seconds_per_tick_ = 1e-9;
  uint64_t evictions_ = 0;
  std::chrono::steady_clock::time_point last_rerank_{};
  RecentWindow recent_;
};

}  // namespace loopwatch::agent
