// The agent's version string, reported by --version and by /api/status. CMake passes the project
// version in LOOPWATCH_VERSION so the two never drift apart.
#pragma once

#include <string_view>

#ifndef LOOPWATCH_VERSION
#define LOOPWATCH_VERSION "0.0.0"
#endif

namespace loopwatch::agent {

inline constexpr std::string_view kAgentVersion = LOOPWATCH_VERSION;

}  // namespace loopwatch::agent
