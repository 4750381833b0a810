// The agent without its event loop and web server: one object that owns the registry, the metric
// families, the ring directory, the mapped rings and the status board, and offers the three periodic
// jobs (Scan, Drain, Watch). main() drives it from Asio timers; tests drive it by calling the jobs directly.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

#include <nlohmann/json.hpp>
#include <string>

#include <prometheus/registry.h>

#include "expose/agent_metrics.h"
#include "expose/agent_status.h"
#include "drain/drainer.h"
#include "stalls/event_log.h"
#include "aggregate/loop_families.h"
#include "aggregate/loop_metrics.h"
#include "discover/owner_policy.h"
#include "discover/refusals.h"
#include "discover/ring_directory.h"
#include "drain/ring_set.h"
#include "discover/scanner.h"
#include "expose/scrape_counter.h"
#include "stalls/stall_watch.h"
#include "expose/status_board.h"
#include "drain/tracked_ring.h"

namespace loopwatch::agent {

struct AgentOptions {
  std::string ring_dir;
  AggregationOptions aggregation;
  OwnerPolicy owners;
  StallOptions stalls;
  std::size_t stall_log_size = 100;   // /api/stalls keeps this many reports
  std::size_t slow_log_size = 1000;   // /api/slow keeps this many events
};

// Scan(), Drain() and Watch() must be called from one thread (the Asio thread). StatusJson(), AppendMetricsText(),
// registry() and scrape_counter() may be used from any thread.
class Agent {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Agent(const AgentOptions& options);
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  void Scan(Clock::time_point now = Clock::now());
  // Returns the samples drained in this cycle.
  uint64_t Drain(Clock::time_point now = Clock::now());
  // The in-flight callback of every live ring (arms slow callbacks, counts stalls): a few loads per
  // ring, every --slow.watch-interval, so that sampling starts soon after the arm threshold.
  void Watch(Clock::time_point now = Clock::now());

  // The /api/status body as of the last Scan or Drain.
  std::string StatusJson() const;
  // The /api/stalls and /api/slow bodies. Thread safe.
  std::string StallsJson() const { return stall_log_.RenderJson(); }
  std::string SlowJson() const { return slow_log_.RenderJson(); }
  // The /metrics body: counts the scrape (before collecting, see scrape_counter.h), collects the
  // registry and writes text format 0.0.4. Thread safe.
  void AppendMetricsText(std::string& out);
  // Sets or clears the agent's pause bit on the live rings of `pid` (every loop, or just `loop`).
  // Returns {"paused": bool, "rings": [{"service", "pid", "loop"}...]} (Asio thread only).
  nlohmann::json SetPaused(int32_t pid, std::optional<uint32_t> loop, bool paused);
  // Builds the status from the rings (Asio thread only).
  AgentStatus BuildStatus() const;

  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }
  const std::shared_ptr<ScrapeCounter>& scrape_counter() const { return scrape_counter_; }
  const RingSet& rings() const { return rings_; }
  const AgentMetrics& metrics() const { return metrics_; }

 private:
  void PublishStatus() { board_.Publish(BuildStatus()); }

  const std::string ring_dir_;
  const std::shared_ptr<prometheus::Registry> registry_;
  const std::shared_ptr<ScrapeCounter> scrape_counter_;

  LoopFamilies families_;
  EventLog stall_log_;
  EventLog slow_log_;
  RingShared shared_;
  AgentMetrics metrics_;
  RingDirectory directory_;
  Refusals refusals_;
  RingSet rings_;
  Scanner scanner_;
  Drainer drainer_;
  StatusBoard board_;
};

}  // namespace loopwatch::agent
