// What one loop did in its last second, and in each of the seconds of the last minute: the data of
// the live page at `/` (served in /api/status as each ring's "recent"). The Prometheus series are
// cumulative and only rate() over a scrape history turns them into "now"; the page has no Prometheus,
// so the agent closes a one-second window itself: callbacks per second, lag p99 and max, the longest
// callback, the busy ratio and the callbacks that took the most wall time.
//
// LoopMetrics feeds it: Note*() per sample (two compares on the drain loop's hot path), AddBatch() per
// batch of samples (bucket counts it already has), and MaybeClose() once per drain cycle.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "aggregate/buckets.h"
#include "aggregate/callback_top_k.h"

namespace loopwatch::agent {

struct RecentCallback {
  std::string name;   // the callback label ("other": every name outside the top K)
  double seconds = 0;  // wall time it ran in the window
};

// One closed window, as a point of the minute's history. float: 60 points per loop go into every
// /api/status response, and a sparkline needs no more than float's 7 digits (shorter JSON).
struct RecentPoint {
  float lag_max_seconds = 0;
  float callbacks_per_second = 0;
  float busy_ratio = 0;
};

// Immutable once published: status snapshots share it by pointer.
struct RecentActivity {
  double window_seconds = 0;  // length of the last closed window
  double callbacks_per_second = 0;
  double lag_p99_seconds = 0;       // upper bound of the bucket holding the 99th percentile, capped at the max
  double lag_max_seconds = 0;       // exact
  double duration_max_seconds = 0;  // exact: the longest callback that ended in the window
  double busy_ratio = 0;            // time outside the poll / window length, 0..1
  uint64_t slow_callbacks = 0;
  std::vector<RecentCallback> top_callbacks;  // most wall time first, at most kTopCallbacks
  std::vector<RecentPoint> history;           // oldest first, the last kHistoryPoints windows (this one included)
  double lag_peak_seconds = 0;                // max of history's lag_max_seconds
};

// Not thread safe: the drain thread only. latest() hands out an immutable snapshot.
class RecentWindow {
 public:
  using Clock = std::chrono::steady_clock;
  using NameOf = std::function<std::string(uint32_t name_id)>;
  static constexpr std::chrono::seconds kLength{1};
  static constexpr std::size_t kHistoryPoints = 60;
  static constexpr std::size_t kTopCallbacks = 5;

  explicit RecentWindow(double seconds_per_tick);

  // Hot path: one sample.
  void NoteDuration(uint64_t ticks) { duration_max_ticks_ = std::max(duration_max_ticks_, ticks); }
  void NoteLag(uint64_t ticks) { lag_max_ticks_ = std::max(lag_max_ticks_, ticks); }
  // One batch: its sample and slow counts, lag bucket counts and summed duration.
  void AddBatch(uint32_t samples, uint32_t slow, const std::array<uint32_t, kSecondsBucketCount>& lag_counts,
                double duration_ticks);

  // Closes the window when kLength has passed since the last close (the first call only starts it).
  // `busy_ticks`: the ring's cumulative busy counter; `top_k` and `name_of` name the callbacks.
  // Returns true when a window was closed.
  bool MaybeClose(Clock::time_point now, uint64_t busy_ticks, const CallbackTopK& top_k, const NameOf& name_of);

  // Null until the first window closed.
  std::shared_ptr<const RecentActivity> latest() const { return latest_; }

 private:
  // Starts a window: zeroes the accumulators and takes every name's total as its baseline.
  void Open(Clock::time_point now, uint64_t busy_ticks, const CallbackTopK& top_k);
  // Publishes the window that ends now as latest() and appends it to the history.
  void Publish(Clock::time_point now, uint64_t busy_ticks, const CallbackTopK& top_k, const NameOf& name_of);
  std::vector<RecentCallback> TopCallbacks(const CallbackTopK& top_k, const NameOf& name_of) const;
  double LagQuantile(double q) const;

  const double seconds_per_tick_;
  bool started_ = false;
  Clock::time_point opened_{};
  uint64_t busy_ticks_at_open_ = 0;
  // Accumulated since the window opened.
  uint64_t samples_ = 0;
  uint64_t slow_ = 0;
  double duration_ticks_ = 0;
  uint64_t lag_max_ticks_ = 0;
  uint64_t duration_max_ticks_ = 0;
  std::array<uint64_t, kSecondsBucketCount> lag_counts_{};
  // Every name's exact total when the window opened (index = id - kFirstNameId): a callback's time in
  // the window is the difference, exact even for a name that took a top-K position meanwhile.
  // O(names) per second, like CallbackTopK's own table.
  std::vector<uint64_t> totals_at_open_;
  std::deque<RecentPoint> history_;
  std::shared_ptr<const RecentActivity> latest_;
};

}  // namespace loopwatch::agent
