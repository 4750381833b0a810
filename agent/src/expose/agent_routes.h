// The agent's HTTP endpoints besides /metrics, as HttpApi routes:
//   GET  /             the live page (live_page.h; Content-Security-Policy: this agent only)
//   GET  /api/status   rings, refusals, drain totals (status_json.h)
//   GET  /api/stalls   the last stall reports with stacks (stall_watch.h)
//   GET  /api/slow     the last slow-callback events
//   POST /api/control  ?action=pause|resume&pid=N[&loop=M]: switches a process's shim off and on.
//                      It changes state, so it is off unless --web.enable-control, and even then it
//                      answers loopback peers only.
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent.h"
#include "expose/http_api.h"

namespace loopwatch::agent {

// Runs `job` on the thread that owns the rings and returns its result, or nullopt if that thread did
// not run it in time. Called on CivetWeb threads.
using AgentThreadRunner = std::function<std::optional<nlohmann::json>(std::function<nlohmann::json()> job)>;

std::vector<HttpRoute> AgentRoutes(Agent& agent, bool control_enabled, AgentThreadRunner run_on_agent_thread);

}  // namespace loopwatch::agent
