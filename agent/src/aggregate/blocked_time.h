// loopwatch_blocked_seconds_total of one loop: the attribution table the shim's watchdog fills while
// it samples slow callbacks (protocol v1.3, loopwatch/attribution.h) mirrored as counters, one per
// (endpoint, handler, site, state) key. Bounded like callback names: the loop's top-K keys by
// blocked time get a series each, every other key is summed into one "other" series, and a key that
// loses its series to a bigger one counts an eviction (loopwatch_blocked_evictions_total).
//
// Counters, not histograms: a sample says where the loop was at one moment, and the time between
// samples is what is charged, so the natural quantity is seconds per key; rate() of it is "the
// fraction of the loop this endpoint / line takes", which sums across keys to the sampled slow time.
// (The per-callback durations are already histograms, by callback name.)
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/labels.h>

#include "aggregate/callback_top_k.h"
#include "aggregate/loop_families.h"
#include "loopwatch/attribution.h"

namespace loopwatch::agent {

// Not thread safe: the drain thread only.
class BlockedTime {
 public:
  using TextOf = std::function<std::string(uint32_t name_id)>;  // a name's text ("" for 0)
  static constexpr std::chrono::seconds kRerankPeriod{1};

  BlockedTime(LoopFamilies& families, const prometheus::Labels& loop_labels, uint32_t top_k);
  ~BlockedTime();  // removes this loop's series
  BlockedTime(const BlockedTime&) = delete;
  BlockedTime& operator=(const BlockedTime&) = delete;

  // Mirrors the first `published` slots (read with PublishedSlots before the name table was polled,
  // so every name they use is known). `slots` points at the table in the mapping.
  void Mirror(const protocol::AttributionSlot* slots, uint32_t published, const TextOf& text_of,
              std::chrono::steady_clock::time_point now);

  uint32_t keys() const { return static_cast<uint32_t>(keys_.size()); }
  uint64_t evictions() const { return evictions_; }
  double total_seconds() const { return total_seconds_; }

  // The label value of a state letter (/proc/<pid>/stat): one value per letter.
  static std::string StateLabel(char state);

 private:
  prometheus::Labels LabelsAt(uint32_t position) const;
  prometheus::Counter& SeriesAt(uint32_t position);

  struct Key {
    std::string endpoint, handler, site, state;
    uint64_t seen_ns = 0;  // blocked_ns mirrored so far
  };

  LoopFamilies& families_;
  const prometheus::Labels loop_labels_;
  CallbackTopK top_k_;  // ids: slot index + kFirstNameId
  std::vector<Key> keys_;  // index = slot
  std::vector<prometheus::Counter*> series_;  // index = top-K position; nullptr = not created yet
  prometheus::Counter* evictions_series_;
  uint64_t evictions_ = 0;
  double total_seconds_ = 0;
  std::chrono::steady_clock::time_point last_rerank_{};
};

}  // namespace loopwatch::agent
