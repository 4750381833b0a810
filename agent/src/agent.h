// The agent without its event loop and web server: one object that owns the registry, the metric
// families, the ring directory, the mapped rings and the status board, and offers the two periodic
// jobs (Scan, Drain). main() drives it from Asio timers; tests drive it by calling the jobs directly.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

#include <nlohmann/json.hpp>
#include <string>

#include <prometheus/registry.h>

#include "agent_metrics.h"
#include "agent_status.h"
#include "drainer.h"
#include "event_log.h"
#include "loop_families.h"
#include "loop_metrics.h"
#include "owner_policy.h"
#include "refusals.h"
#include "ring_directory.h"
#include "ring_set.h"
#include "scanner.h"
#include "scrape_counter.h"
#include "stall_watch.h"
#include "status_board.h"
#include "tracked_ring.h"

namespace loopwatch::agent {

struct AgentOptions {
  std::string ring_dir;
  AggregationOptions aggregation;
  OwnerPolicy owners;
  StallOptions stalls;
  std::size_t stall_log_size = 100;   // /api/stalls keeps this many reports
  std::size_t slow_log_size = 1000;   // /api/slow keeps this many events
};

// Scan() and Drain() must be called from one thread (the Asio thread). StatusJson(), AppendMetricsText(),
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
