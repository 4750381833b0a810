// The agent's metrics about itself: rings mapped, refused (by reason) and retired, samples drained,
// and how long each drain cycle takes. Also keeps plain copies of the counts for /api/status.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace loopwatch::agent {

// Not thread safe: updated on the agent's Asio thread only (the prometheus series themselves may
// be collected concurrently; prometheus-cpp metrics are thread safe).
class AgentMetrics {
 public:
  explicit AgentMetrics(prometheus::Registry& registry);
  AgentMetrics(const AgentMetrics&) = delete;
  AgentMetrics& operator=(const AgentMetrics&) = delete;

  void SetRingsMapped(std::size_t rings);
  void CountRefused(std::string_view reason);
  void CountRetired();
  void CountDrained(uint64_t samples);
  void ObserveDrainCycle(double seconds);
  // Thread safe (a prometheus-cpp histogram only): called on CivetWeb threads.
  void ObserveScrape(double seconds);

  uint64_t samples_drained() const { return samples_drained_; }
  uint64_t rings_retired() const { return rings_retired_; }
  // Refusals so far by reason (only reasons that occurred).
  const std::map<std::string, uint64_t, std::less<>>& refused() const { return refused_; }

 private:
  prometheus::Gauge& rings_;
  prometheus::Family<prometheus::Counter>& refused_family_;
  prometheus::Counter& retired_;
  prometheus::Counter& drained_;
  prometheus::Histogram& drain_duration_;
  prometheus::Histogram& scrape_duration_;
  std::map<std::string, uint64_t, std::less<>> refused_;
  uint64_t samples_drained_ = 0;
  uint64_t rings_retired_ = 0;
};

}  // namespace loopwatch::agent
