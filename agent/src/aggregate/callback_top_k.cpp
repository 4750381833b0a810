// Admission and re-ranking of the per-loop callback top-K; see callback_top_k.h.
#include "aggregate/callback_top_k.h"

#include <algorithm>

namespace loopwatch::agent {

CallbackTopK::CallbackTopK(uint32_t k) : k_(k), member_by_position_(k + 1, 0) {}

void CallbackTopK::AddName(uint32_t name_id) {
  if (name_id < protocol::kFirstNameId) return;
  const uint32_t index = name_id - protocol::kFirstNameId;
  if (index >= entries_.size()) entries_.resize(std::size_t{index} + 1);
}

void CallbackTopK::Admit(uint32_t index) {
  const uint32_t position = members_ + 1;
  entries_[index].position = position;
  member_by_position_[position] = index + 1;
  ++members_;
}

std::vector<CallbackTopK::Swap> CallbackTopK::Rerank() {
  std::vector<Swap> swaps;
  // While positions are free every recorded name was admitted at once: nobody waits outside.
  if (members_ < k_) return swaps;

  std::vector<uint32_t> members;  // entry indexes, smallest total first
  members.reserve(members_);
  for (uint32_t position = 1; position <= members_; ++position) members.push_back(member_by_position_[position] - 1);
  std::vector<uint32_t> outsiders;  // entry indexes with time recorded but no position
  for (uint32_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].position == kOtherPosition && entries_[i].total_ticks > 0) outsiders.push_back(i);
  }
  if (outsiders.empty()) return swaps;

  const auto total = [this](uint32_t index) { return entries_[index].total_ticks; };
  std::sort(members.begin(), members.end(), [&](uint32_t a, uint32_t b) { return total(a) < total(b); });
  const std::size_t pairs = std::min(members.size(), outsiders.size());
  std::partial_sort(outsiders.begin(), outsiders.begin() + static_cast<std::ptrdiff_t>(pairs), outsiders.end(),
                    [&](uint32_t a, uint32_t b) { return total(a) > total(b); });

  // The i-th largest outsider against the i-th smallest member: once one pair fails, all later
  // pairs (smaller outsider, larger member) fail too.
  for (std::size_t i = 0; i < pairs; ++i) {
    const uint32_t member = members[i];
    const uint32_t outsider = outsiders[i];
    if (!(static_cast<double>(total(outsider)) > static_cast<double>(total(member)) * kHysteresis)) break;
    const uint32_t position = entries_[member].position;
    entries_[member].position = kOtherPosition;
    entries_[outsider].position = position;
    member_by_position_[position] = outsider + 1;
    swaps.push_back({position, member + protocol::kFirstNameId, outsider + protocol::kFirstNameId});
  }
  return swaps;
}

uint32_t CallbackTopK::MemberAt(uint32_t position) const {
  if (position == kOtherPosition || position > k_ || member_by_position_[position] == 0) return 0;
  return member_by_position_[position] - 1 + protocol::kFirstNameId;
}

uint64_t CallbackTopK::TotalTicks(uint32_t name_id) const {
  const uint32_t index = name_id - protocol::kFirstNameId;
  return index < entries_.size() ? entries_[index].total_ticks : 0;
}

uint32_t CallbackTopK::PositionOf(uint32_t name_id) const {
  const uint32_t index = name_id - protocol::kFirstNameId;
  return index < entries_.size() ? entries_[index].position : kOtherPosition;
}

}  // namespace loopwatch::agent
