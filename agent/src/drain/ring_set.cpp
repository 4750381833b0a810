// Adding and retiring mapped rings; see ring_set.h.
#include "drain/ring_set.h"

#include <spdlog/spdlog.h>

#include "expose/label_text.h"
#include "discover/writer_liveness.h"

namespace loopwatch::agent {

RingSet::RingSet(RingShared& shared, AgentMetrics& metrics, Refusals& refusals)
    : shared_(shared), metrics_(metrics), refusals_(refusals) {}

RingSet::AddResult RingSet::Add(std::unique_ptr<RingFile> file, const std::string& name) {
  LoopKey key{SanitizeUtf8(file->header().service_name()), file->header().pid, file->header().loop_id};
  if (keys_.count(key) != 0) return AddResult::kDuplicateLoop;
  const protocol::HeaderSnapshot& h = file->header();
  spdlog::info("mapped ring {} (service={} pid={} loop={} kind={} capacity={})", ForLog(file->path()), ForLog(key.service), h.pid,
               h.loop_id, h.loop_kind == protocol::LoopKind::kUvloop ? "uvloop" : "asyncio", h.ring_capacity);
  rings_.push_back(std::make_unique<TrackedRing>(std::move(file), name, shared_));
  keys_.insert(std::move(key));
  metrics_.SetRingsMapped(rings_.size());
  return AddResult::kAdded;
}

bool RingSet::Contains(const FileIdentity& identity) const {
  for (const auto& ring : rings_) {
    if (ring->file().identity().SameInode(identity)) return true;
  }
  return false;
}

void RingSet::Sweep(uint64_t scrapes, Clock::time_point now) {
  bool removed = false;
  for (auto it = rings_.begin(); it != rings_.end();) {
    if (!(*it)->ReadyToRetire(scrapes, now)) {
      ++it;
      continue;
    }
    Retire(**it);
    keys_.erase((*it)->key());
    it = rings_.erase(it);  // removes the series, then unmaps and closes
    removed = true;
  }
  if (removed) metrics_.SetRingsMapped(rings_.size());
}

void RingSet::Retire(TrackedRing& ring) {
  RingFile& file = ring.file();
  if (ring.phase() == RingPhase::kCorrupt) {
    // A live writer would only recreate the problem: keep its file, skip it until it is replaced.
    const bool writer_alive = QueryWriter(file.fd()) != WriterState::kGone;
    refusals_.Refuse(ring.name(), file.path(), file.identity(), ring.corrupt_reason(), /*whole_life=*/true,
                     writer_alive ? "writer alive, file kept" : "writer gone, file removed");
    if (!writer_alive) file.UnlinkIfUnchanged();
    return;
  }
  const bool unlinked = file.UnlinkIfUnchanged();
  metrics_.CountRetired();
  spdlog::info("retired ring {} (writer gone, {} samples drained{})", ForLog(file.path()), ring.metrics().samples(),
               unlinked ? ", file removed" : "");
}

}  // namespace loopwatch::agent
