// Bounded top-K of one loop's callback names by total wall time. The drain loop records every
// sample's duration against its name id (a flat vector indexed by id, no hashing); a name gets one of
// K positions while positions are free, and once they are full a newcomer only takes the position
// of the smallest member at a re-rank, and only when it beats it by a margin (hysteresis), so the
// set of series does not flap. Position 0 is "other": every name without a position.
#pragma once

#include <cstdint>
#include <vector>

#include "loopwatch/layout.h"

namespace loopwatch::agent {

// Not thread safe: one instance belongs to one ring and is used on the drain thread only.
class CallbackTopK {
 public:
  static constexpr uint32_t kOtherPosition = 0;
  // A newcomer must exceed the smallest member's total by this factor to replace it.
  static constexpr double kHysteresis = 1.1;

  struct Swap {
    uint32_t position;     // 1..K
    uint32_t evicted_id;   // name id that loses the position (now counted in "other")
    uint32_t admitted_id;  // name id that takes it
  };

  explicit CallbackTopK(uint32_t k);

  // Makes `name_id` known (ids arrive consecutively from kFirstNameId). Ids never made known are
  // always "other".
  void AddName(uint32_t name_id);

  // Hot path: adds `ticks` to the name's total and returns its position (1..K) or kOtherPosition.
  uint32_t Record(uint32_t name_id, uint64_t ticks) {
    const uint32_t index = name_id - protocol::kFirstNameId;  // reserved ids wrap to huge values
    if (index >= entries_.size()) return kOtherPosition;
    Entry& entry = entries_[index];
    entry.total_ticks += ticks;
    if (entry.position == kOtherPosition && members_ < k_) Admit(index);
    return entry.position;
  }

  // Replaces members by outsiders with a larger total (beyond the hysteresis), smallest member first.
  // Returns the swaps made; the caller moves the series.
  std::vector<Swap> Rerank();

  uint32_t k() const { return k_; }
  // Names made known so far (ids kFirstNameId .. kFirstNameId + names() - 1).
  uint32_t names() const { return static_cast<uint32_t>(entries_.size()); }
  uint32_t members() const { return members_; }
  // Name id holding `position` (1..K), or 0 when the position is free.
  uint32_t MemberAt(uint32_t position) const;
  // Exact total wall time recorded for `name_id` (0 for unknown ids).
  uint64_t TotalTicks(uint32_t name_id) const;
  uint32_t PositionOf(uint32_t name_id) const;

 private:
  struct Entry {
    uint64_t total_ticks = 0;
    uint32_t position = kOtherPosition;
  };

  void Admit(uint32_t index);

  uint32_t k_;
  uint32_t members_ = 0;
  std::vector<Entry> entries_;             // index = name id - kFirstNameId
  std::vector<uint32_t> member_by_position_;  // index = position, value = entry index + 1 (0 = free)
};

}  // namespace loopwatch::agent
