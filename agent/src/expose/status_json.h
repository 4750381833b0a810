// Renders an AgentStatus as the /api/status JSON document (schema in agent/README.md).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "expose/agent_status.h"

namespace loopwatch::agent {

// Thread safe (pure functions).
nlohmann::json BuildStatusJson(const AgentStatus& status);
// Compact JSON text; any invalid UTF-8 that slipped through is replaced, never thrown.
std::string RenderStatusJson(const AgentStatus& status);

}  // namespace loopwatch::agent
