// The one-second window of the live page; see recent_window.h.
#include "aggregate/recent_window.h"

#include <utility>

namespace loopwatch::agent {

RecentWindow::RecentWindow(double seconds_per_tick) : seconds_per_tick_(seconds_per_tick) {}

void RecentWindow::AddBatch(uint32_t samples, uint32_t slow, const std::array<uint32_t, kSecondsBucketCount>& lag_counts,
                            double duration_ticks) {
  samples_ += samples;
  slow_ += slow;
  duration_ticks_ += duration_ticks;
  for (std::size_t i = 0; i < kSecondsBucketCount; ++i) lag_counts_[i] += lag_counts[i];
}

double RecentWindow::LagQuantile(double q) const {
  uint64_t total = 0;
  for (uint64_t c : lag_counts_) total += c;
  if (total == 0) return 0;
  const double lag_max = static_cast<double>(lag_max_ticks_) * seconds_per_tick_;
  const auto rank = static_cast<uint64_t>(q * static_cast<double>(total) + 0.999999);  // ceil, at least 1
  uint64_t seen = 0;
  for (std::size_t i = 0; i < kSecondsBucketCount; ++i) {
    seen += lag_counts_[i];
    if (seen >= rank) return i + 1 < kSecondsBucketCount ? std::min(SecondsBuckets()[i], lag_max) : lag_max;
  }
  return lag_max;
}

std::vector<RecentCallback> RecentWindow::TopCallbacks(const CallbackTopK& top_k, const NameOf& name_of) const {
  std::vector<std::pair<double, uint32_t>> ranked;  // seconds in the window, name id (0: "other")
  double named_ticks = 0;
  for (uint32_t position = 1; position <= top_k.k(); ++position) {
    const uint32_t id = top_k.MemberAt(position);
    if (id == 0) continue;
    const uint32_t index = id - protocol::kFirstNameId;
    const uint64_t before = index < totals_at_open_.size() ? totals_at_open_[index] : 0;  // new since: 0
    const uint64_t total = top_k.TotalTicks(id);
    if (total <= before) continue;
    ranked.emplace_back(static_cast<double>(total - before) * seconds_per_tick_, id);
    named_ticks += static_cast<double>(total - before);
  }
  const double other = (duration_ticks_ - named_ticks) * seconds_per_tick_;
  if (other > 0) ranked.emplace_back(other, 0);
  const std::size_t n = std::min(ranked.size(), kTopCallbacks);
  std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(n), ranked.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<RecentCallback> top;
  for (std::size_t i = 0; i < n; ++i) {
    top.push_back({ranked[i].second == 0 ? std::string("other") : name_of(ranked[i].second), ranked[i].first});
  }
  return top;
}

void RecentWindow::Open(Clock::time_point now, uint64_t busy_ticks, const CallbackTopK& top_k) {
  opened_ = now;
  busy_ticks_at_open_ = busy_ticks;
  samples_ = slow_ = 0;
  duration_ticks_ = 0;
  lag_max_ticks_ = duration_max_ticks_ = 0;
  lag_counts_.fill(0);
  totals_at_open_.resize(top_k.names());
  for (uint32_t index = 0; index < totals_at_open_.size(); ++index) {
    totals_at_open_[index] = top_k.TotalTicks(protocol::kFirstNameId + index);
  }
}

void RecentWindow::Publish(Clock::time_point now, uint64_t busy_ticks, const CallbackTopK& top_k, const NameOf& name_of) {
  const double length = std::chrono::duration<double>(now - opened_).count();
  auto activity = std::make_shared<RecentActivity>();
  activity->window_seconds = length;
  activity->callbacks_per_second = static_cast<double>(samples_) / length;
  activity->lag_p99_seconds = LagQuantile(0.99);
  activity->lag_max_seconds = static_cast<double>(lag_max_ticks_) * seconds_per_tick_;
  activity->duration_max_seconds = static_cast<double>(duration_max_ticks_) * seconds_per_tick_;
  const uint64_t busy = busy_ticks > busy_ticks_at_open_ ? busy_ticks - busy_ticks_at_open_ : 0;
  activity->busy_ratio = std::clamp(static_cast<double>(busy) * seconds_per_tick_ / length, 0.0, 1.0);
  activity->slow_callbacks = slow_;
  activity->top_callbacks = TopCallbacks(top_k, name_of);

  if (history_.size() == kHistoryPoints) history_.pop_front();
  // The minute's peak: exact for this window, float (the history's precision) for the older ones.
  activity->lag_peak_seconds = activity->lag_max_seconds;
  for (const RecentPoint& point : history_) {
    activity->lag_peak_seconds = std::max(activity->lag_peak_seconds, static_cast<double>(point.lag_max_seconds));
  }
  history_.push_back({static_cast<float>(activity->lag_max_seconds), static_cast<float>(activity->callbacks_per_second),
                      static_cast<float>(activity->busy_ratio)});
  activity->history.assign(history_.begin(), history_.end());
  latest_ = std::move(activity);
}

bool RecentWindow::MaybeClose(Clock::time_point now, uint64_t busy_ticks, const CallbackTopK& top_k,
                              const NameOf& name_of) {
  if (started_ && now - opened_ < kLength) return false;
  const bool closing = started_;
  if (closing) Publish(now, busy_ticks, top_k, name_of);
  // The next window. The first one starts at the first call: what was drained before it (a backlog of
  // unknown age) is not "recent".
  started_ = true;
  Open(now, busy_ticks, top_k);
  return closing;
}

}  // namespace loopwatch::agent
