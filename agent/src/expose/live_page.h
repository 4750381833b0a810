// The live page served at `/` (agent/web/live.html, embedded at build time by agent/CMakeLists.txt):
// every loop of every service with its lag, callback rate, in-flight age and top callbacks, polled
// from /api/status once a second. Self-contained: LivePageHeaders' Content-Security-Policy lets it
// reach nothing but this agent.
#pragma once

#include <string_view>

namespace loopwatch::agent {

std::string_view LivePageHtml();

}  // namespace loopwatch::agent
