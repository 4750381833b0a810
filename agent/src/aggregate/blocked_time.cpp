// Mirrors one ring's attribution table into top-K counters; see blocked_time.h.
#include "aggregate/blocked_time.h"

#include "expose/label_text.h"

namespace loopwatch::agent {
namespace {

constexpr const char* kOther = "other";

}  // namespace

std::string BlockedTime::StateLabel(char state) {
  switch (state) {
    case 'R': return "running";
    case 'S': return "sleeping";
    case 'D': return "uninterruptible";
    case '?': return "unknown";
    default: return std::string("state ") + (state >= 0x21 && state < 0x7F ? state : '?');  // one label per letter
  }
}

BlockedTime::BlockedTime(LoopFamilies& families, const prometheus::Labels& loop_labels, uint32_t top_k)
    : families_(families),
      loop_labels_(loop_labels),
      top_k_(top_k),
      series_(std::size_t{top_k} + 1, nullptr),
      evictions_series_(&families.blocked_evictions.Add(loop_labels)) {
  SeriesAt(CallbackTopK::kOtherPosition);  // from the start, as for callbacks: 0 rather than absent
}

BlockedTime::~BlockedTime() {
  for (prometheus::Counter* series : series_) {
    if (series != nullptr) families_.blocked_seconds.Remove(series);
  }
  families_.blocked_evictions.Remove(evictions_series_);
}

prometheus::Labels BlockedTime::LabelsAt(uint32_t position) const {
  prometheus::Labels labels = loop_labels_;
  if (position == CallbackTopK::kOtherPosition) {
    labels.insert({{"endpoint", kOther}, {"handler", kOther}, {"site", kOther}, {"state", kOther}});
    return labels;
  }
  const Key& key = keys_[top_k_.MemberAt(position) - protocol::kFirstNameId];
  labels.insert({{"endpoint", key.endpoint}, {"handler", key.handler}, {"site", key.site}, {"state", key.state}});
  return labels;
}

prometheus::Counter& BlockedTime::SeriesAt(uint32_t position) {
  prometheus::Counter*& series = series_[position];
  if (series == nullptr) series = &families_.blocked_seconds.Add(LabelsAt(position));
  return *series;
}

void BlockedTime::Mirror(const protocol::AttributionSlot* slots, uint32_t published, const TextOf& text_of,
                         std::chrono::steady_clock::time_point now) {
  while (keys_.size() < published) {  // new slots: their keys never change
    const protocol::AttributionSlot& slot = slots[keys_.size()];
    const bool overflow = slot.site == protocol::kNameIdOther && slot.endpoint == protocol::kNameIdOther;
    keys_.push_back({overflow ? kOther : text_of(slot.endpoint), overflow ? kOther : text_of(slot.handler),
                     overflow ? kOther : text_of(slot.site),
                     overflow ? kOther : StateLabel(static_cast<char>(slot.state & 0x7F))});
    // The overflow slot (the table's last) is never made known: it always counts as "other", whose
    // labels it shares (two series of one family with equal labels would be one object).
    if (!overflow) top_k_.AddName(protocol::kFirstNameId + static_cast<uint32_t>(keys_.size()) - 1);
  }
  for (uint32_t i = 0; i < keys_.size(); ++i) {
    // Relaxed: a monotonic statistic the watchdog bumps; any recent value is fine.
    const uint64_t ns = slots[i].blocked_ns.load(std::memory_order_relaxed);
    Key& key = keys_[i];
    if (ns <= key.seen_ns) continue;
    const uint64_t delta = ns - key.seen_ns;
    key.seen_ns = ns;
    const double seconds = static_cast<double>(delta) * 1e-9;
    total_seconds_ += seconds;
    SeriesAt(top_k_.Record(protocol::kFirstNameId + i, delta)).Increment(seconds);
  }
  if (now - last_rerank_ < kRerankPeriod) return;
  last_rerank_ = now;
  for (const CallbackTopK::Swap& swap : top_k_.Rerank()) {
    if (series_[swap.position] != nullptr) families_.blocked_seconds.Remove(series_[swap.position]);
    series_[swap.position] = nullptr;  // the newcomer's series starts at zero; its history stays in "other"
    SeriesAt(swap.position);
    evictions_series_->Increment();
    ++evictions_;
  }
}

}  // namespace loopwatch::agent
