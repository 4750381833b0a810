// The scan cycle (every --scan.interval): maps new ring files, refuses bad ones once, asks every
// mapped ring whether its writer is still alive, gives a ring whose writer is gone its final drain,
// and retires what is done.
#pragma once

#include <chrono>
#include <cstdint>
#include <set>
#include <utility>

#include "expose/agent_metrics.h"
#include "discover/owner_policy.h"
#include "discover/refusals.h"
#include "discover/ring_directory.h"
#include "drain/ring_set.h"
#include "expose/scrape_counter.h"

namespace loopwatch::agent {

// Not thread safe: Asio thread only.
class Scanner {
 public:
  using Clock = std::chrono::steady_clock;
  // A ring whose final drain nobody scrapes is retired anyway after this long.
  static constexpr std::chrono::seconds kRetireDeadline{60};

  Scanner(RingDirectory& directory, RingSet& rings, Refusals& refusals, AgentMetrics& metrics,
          const ScrapeCounter& scrapes, OwnerPolicy owners)
      : directory_(directory), rings_(rings), refusals_(refusals), metrics_(metrics), scrapes_(scrapes),
        owners_(std::move(owners)) {}
  Scanner(const Scanner&) = delete;
  Scanner& operator=(const Scanner&) = delete;

  void Scan(Clock::time_point now);

 private:
  void MapNewFiles(Clock::time_point now);
  void CheckWriters(Clock::time_point now);

  RingDirectory& directory_;
  RingSet& rings_;
  Refusals& refusals_;
  AgentMetrics& metrics_;
  const ScrapeCounter& scrapes_;
  const OwnerPolicy owners_;
  bool directory_unreadable_ = false;
  std::set<std::pair<uint64_t, uint64_t>> duplicates_warned_;  // (device, inode) of deferred rings
};

}  // namespace loopwatch::agent
