// The /api/status document; see status_json.h.
#include "status_json.h"

namespace loopwatch::agent {

nlohmann::json BuildStatusJson(const AgentStatus& status) {
  nlohmann::json refused = nlohmann::json::object();
  for (const auto& [reason, count] : status.refused) refused[reason] = count;
  nlohmann::json rings = nlohmann::json::array();
  for (const RingStatus& ring : status.rings) {
    rings.push_back({
        {"file", ring.file},
        {"service", ring.service},
        {"pid", ring.pid},
        {"loop", ring.loop},
        {"kind", ring.kind},
        {"thread", ring.thread},
        {"samples", ring.samples},
        {"dropped", ring.dropped},
        {"names", ring.names},
        {"alive", ring.alive},
        {"backlog", ring.backlog},
        {"paused", ring.paused},
        {"inflight_seconds", ring.inflight_seconds},
        {"stalls", ring.stalls},
    });
  }
  return {
      {"agent",
       {
           {"version", status.version},
           {"ring_dir", status.ring_dir},
           {"rings_mapped", status.rings_mapped},
           {"samples_drained", status.samples_drained},
           {"refused", std::move(refused)},
       }},
      {"rings", std::move(rings)},
  };
}

std::string RenderStatusJson(const AgentStatus& status) {
  return BuildStatusJson(status).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace loopwatch::agent
