// The /api/status document; see status_json.h.
#include "expose/status_json.h"

namespace loopwatch::agent {
namespace {

// null before the loop's first window closed.
nlohmann::json RecentJson(const RecentActivity* recent) {
  if (recent == nullptr) return nullptr;
  nlohmann::json top = nlohmann::json::array();
  for (const RecentCallback& callback : recent->top_callbacks) {
    top.push_back({{"callback", callback.name}, {"seconds", callback.seconds}});
  }
  nlohmann::json lag = nlohmann::json::array(), rate = nlohmann::json::array(), busy = nlohmann::json::array();
  for (const RecentPoint& point : recent->history) {
    lag.push_back(point.lag_max_seconds);
    rate.push_back(point.callbacks_per_second);
    busy.push_back(point.busy_ratio);
  }
  return {
      {"window_seconds", recent->window_seconds},
      {"callbacks_per_second", recent->callbacks_per_second},
      {"lag_p99_seconds", recent->lag_p99_seconds},
      {"lag_max_seconds", recent->lag_max_seconds},
      {"lag_peak_seconds", recent->lag_peak_seconds},
      {"duration_max_seconds", recent->duration_max_seconds},
      {"busy_ratio", recent->busy_ratio},
      {"slow_callbacks", recent->slow_callbacks},
      {"top_callbacks", std::move(top)},
      {"history", {{"lag_max_seconds", std::move(lag)}, {"callbacks_per_second", std::move(rate)}, {"busy_ratio", std::move(busy)}}},
  };
}

}  // namespace

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
        {"inflight_callback", ring.inflight_callback},
        {"inflight_endpoint", ring.inflight_endpoint},
        {"inflight_handler", ring.inflight_handler},
        {"inflight_site", ring.inflight_site},
        {"stalls", ring.stalls},
        {"recent", RecentJson(ring.recent.get())},
    });
  }
  return {
      {"agent",
       {
           {"version", status.version},
           {"ring_dir", status.ring_dir},
           {"slow_threshold_seconds", status.slow_threshold_seconds},
           {"stall_threshold_seconds", status.stall_threshold_seconds},
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
