// Wiring of the agent's parts; see agent.h.
#include "agent.h"

#include "expose/text_exposition.h"

#include "expose/status_json.h"
#include "version.h"

namespace loopwatch::agent {

Agent::Agent(const AgentOptions& options)
    : ring_dir_(options.ring_dir),
      registry_(std::make_shared<prometheus::Registry>()),
      scrape_counter_(std::make_shared<ScrapeCounter>()),
      families_(*registry_),
      stall_log_(options.stall_log_size),
      slow_log_(options.slow_log_size),
      shared_{families_, options.aggregation, options.stalls, stall_log_, slow_log_},
      metrics_(*registry_),
      directory_(options.ring_dir),
      refusals_(directory_, metrics_),
      rings_(shared_, metrics_, refusals_),
      scanner_(directory_, rings_, refusals_, metrics_, *scrape_counter_, options.owners),
      drainer_(rings_, metrics_, *scrape_counter_) {
  PublishStatus();
}

void Agent::Scan(Clock::time_point now) {
  scanner_.Scan(now);
  PublishStatus();
}

uint64_t Agent::Drain(Clock::time_point now) {
  const uint64_t drained = drainer_.RunCycle(now);
  PublishStatus();
  return drained;
}

void Agent::Watch(Clock::time_point now) {
  for (const auto& ring : rings_.rings()) ring->Watch(now);
}

std::string Agent::StatusJson() const { return RenderStatusJson(board_.Snapshot()); }

void Agent::AppendMetricsText(std::string& out) {
  const auto started = Clock::now();
  scrape_counter_->Count();  // before anything is collected (scrape_counter.h)
  AppendTextExposition(registry_->Collect(), out);
  metrics_.ObserveScrape(std::chrono::duration<double>(Clock::now() - started).count());
}

nlohmann::json Agent::SetPaused(int32_t pid, std::optional<uint32_t> loop, bool paused) {
  nlohmann::json rings = nlohmann::json::array();
  for (const auto& ring : rings_.rings()) {
    if (ring->phase() != RingPhase::kLive || ring->key().pid != pid || (loop && ring->key().loop != *loop)) continue;
    ring->SetPaused(paused);
    rings.push_back({{"service", ring->key().service}, {"pid", ring->key().pid}, {"loop", ring->key().loop}});
  }
  PublishStatus();
  return {{"paused", paused}, {"rings", std::move(rings)}};
}

AgentStatus Agent::BuildStatus() const {
  AgentStatus status;
  status.version = std::string(kAgentVersion);
  status.ring_dir = ring_dir_;
  status.slow_threshold_seconds = shared_.aggregation.slow_threshold_seconds;
  status.stall_threshold_seconds = shared_.stalls.stall_threshold_seconds;
  status.rings_mapped = rings_.size();
  status.samples_drained = metrics_.samples_drained();
  status.refused = metrics_.refused();
  status.rings.reserve(rings_.size());
  for (const auto& ring : rings_.rings()) status.rings.push_back(ring->Status());
  return status;
}

}  // namespace loopwatch::agent
