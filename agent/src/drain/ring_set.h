// The rings the agent has mapped now, and their retirement: a ring whose final drain was scraped
// (or timed out) loses its series, is unmapped and its file removed; a corrupt ring loses its series
// and is unmapped at once, its file kept while its writer lives.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "expose/agent_metrics.h"
#include "aggregate/loop_families.h"
#include "aggregate/loop_metrics.h"
#include "discover/refusals.h"
#include "discover/ring_file.h"
#include "drain/tracked_ring.h"

namespace loopwatch::agent {

// Not thread safe: Asio thread only.
class RingSet {
 public:
  using Clock = std::chrono::steady_clock;

  RingSet(RingShared& shared, AgentMetrics& metrics, Refusals& refusals);
  RingSet(const RingSet&) = delete;
  RingSet& operator=(const RingSet&) = delete;

  enum class AddResult : uint8_t {
    kAdded = 1,
    kDuplicateLoop,  // another mapped ring has the same (service, pid, loop); try again later
  };
  AddResult Add(std::unique_ptr<RingFile> file, const std::string& name);

  // Whether a ring with this device and inode is mapped.
  bool Contains(const FileIdentity& identity) const;

  // Retires every ring that is done (see file comment). `scrapes` is the scrape count now.
  void Sweep(uint64_t scrapes, Clock::time_point now);

  const std::vector<std::unique_ptr<TrackedRing>>& rings() const { return rings_; }
  std::size_t size() const { return rings_.size(); }

 private:
  void Retire(TrackedRing& ring);

  RingShared& shared_;
  AgentMetrics& metrics_;
  Refusals& refusals_;
  std::vector<std::unique_ptr<TrackedRing>> rings_;
  std::set<LoopKey> keys_;  // keys of rings_
};

}  // namespace loopwatch::agent
