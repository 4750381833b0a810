// Registers and updates the agent's self metrics; see agent_metrics.h.
#include "expose/agent_metrics.h"


#include "aggregate/buckets.h"
#include "loopwatch/header_check.h"

namespace loopwatch::agent {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

AgentMetrics::AgentMetrics(prometheus::Registry& registry)
    : rings_(BuildGauge()
                 .Name("loopwatch_agent_rings")
                 .Help("Ring files mapped now.")
                 .Register(registry)
                 .Add({})),
      refused_family_(BuildCounter()
                          .Name("loopwatch_agent_rings_refused_total")
                          .Help("Ring files refused (or dropped after mapping), by reason.")
                          .Register(registry)),
      retired_(BuildCounter()
                   .Name("loopwatch_agent_rings_retired_total")
                   .Help("Rings whose writer exited and that were drained, scraped once and removed.")
                   .Register(registry)
                   .Add({})),
      drained_(BuildCounter()
                   .Name("loopwatch_agent_samples_drained_total")
                   .Help("Samples read from all rings.")
                   .Register(registry)
                   .Add({})),
      drain_duration_(BuildHistogram()
                          .Name("loopwatch_agent_drain_duration_seconds")
                          .Help("Duration of one drain cycle over all rings.")
                          .Register(registry)
                          .Add({}, SecondsBuckets())),
      scrape_duration_(BuildHistogram()
                           .Name("loopwatch_agent_scrape_duration_seconds")
                           .Help("Time to collect and write one /metrics response.")
                           .Register(registry)
                           .Add({}, SecondsBuckets())) {
  // Every reason exists from the start at 0, so rate() and alerts work before the first refusal.
  for (auto e = static_cast<uint8_t>(protocol::HeaderError::kTooSmall);
       e <= static_cast<uint8_t>(protocol::HeaderError::kBadClock); ++e) {
    refused_family_.Add({{"reason", std::string(protocol::HeaderErrorName(static_cast<protocol::HeaderError>(e)))}});
  }
  for (const char* reason : {"not_regular_file", "owner_not_allowed", "open_failed", "map_failed", "too_many_rings", "truncated",
                             "corrupt_ring", "corrupt_names"}) {
    refused_family_.Add({{"reason", reason}});
  }
}

void AgentMetrics::SetRingsMapped(std::size_t rings) { rings_.Set(static_cast<double>(rings)); }

void AgentMetrics::CountRefused(std::string_view reason) {
  refused_family_.Add({{"reason", std::string(reason)}}).Increment();
  auto it = refused_.find(reason);
  if (it == refused_.end()) it = refused_.emplace(std::string(reason), 0).first;
  ++it->second;
}

void AgentMetrics::CountRetired() {
  retired_.Increment();
  ++rings_retired_;
}

void AgentMetrics::CountDrained(uint64_t samples) {
  if (samples == 0) return;
  drained_.Increment(static_cast<double>(samples));
  samples_drained_ += samples;
}

void AgentMetrics::ObserveDrainCycle(double seconds) { drain_duration_.Observe(seconds); }

void AgentMetrics::ObserveScrape(double seconds) { scrape_duration_.Observe(seconds); }

}  // namespace loopwatch::agent
