// The drain cycle (every --drain.interval): drains every live ring in bounded batches, counts what it
// read, times itself, and retires rings that became corrupt or whose final drain was scraped.
#pragma once

#include <chrono>
#include <cstdint>

#include "expose/agent_metrics.h"
#include "drain/ring_set.h"
#include "expose/scrape_counter.h"

namespace loopwatch::agent {

// Not thread safe: Asio thread only.
class Drainer {
 public:
  using Clock = std::chrono::steady_clock;
  // At most this many ring capacities are read from one ring per cycle, so one flooded ring cannot
  // starve the others.
  static constexpr uint64_t kCapacitiesPerCycle = 4;

  Drainer(RingSet& rings, AgentMetrics& metrics, const ScrapeCounter& scrapes)
      : rings_(rings), metrics_(metrics), scrapes_(scrapes) {}
  Drainer(const Drainer&) = delete;
  Drainer& operator=(const Drainer&) = delete;

  // Returns the samples drained in this cycle.
  uint64_t RunCycle(Clock::time_point now);

 private:
  RingSet& rings_;
  AgentMetrics& metrics_;
  const ScrapeCounter& scrapes_;
};

}  // namespace loopwatch::agent
