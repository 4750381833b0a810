// Plain snapshots of the agent's state for /api/status: built on the Asio thread, handed to the
// web server threads by value (StatusBoard), rendered to JSON by status_json.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "aggregate/recent_window.h"

namespace loopwatch::agent {

struct RingStatus {
  std::string file;     // entry name in the ring directory
  std::string service;  // valid UTF-8
  int32_t pid = 0;
  uint32_t loop = 0;
  std::string kind;  // "asyncio" | "uvloop"
  int32_t thread = 0;
  uint64_t samples = 0;  // drained since the agent mapped the ring
  uint64_t dropped = 0;  // the writer's cumulative drop counter
  uint32_t names = 0;    // name table records read
  bool alive = true;     // the writer still holds its lock
  uint64_t backlog = 0;  // samples written but not drained yet
  bool paused = false;   // the shim records nothing (paused by the agent or by the app)
  double inflight_seconds = 0;  // age of the callback running now (0 when idle)
  std::string inflight_callback;  // its name once it ran past --slow.threshold, else ""
  std::string inflight_endpoint;  // what its first stack sample said (v1.3 rings), else ""
  std::string inflight_handler;
  std::string inflight_site;
  std::shared_ptr<const RecentActivity> recent;  // the last closed one-second window (null before the first)
  uint64_t stalls = 0;          // stalls seen since the agent mapped the ring
};

struct AgentStatus {
  std::string version;
  std::string ring_dir;
  double slow_threshold_seconds = 0;   // --slow.threshold
  double stall_threshold_seconds = 0;  // --stall.threshold
  uint64_t rings_mapped = 0;
  uint64_t samples_drained = 0;
  std::map<std::string, uint64_t, std::less<>> refused;  // reason -> count
  std::vector<RingStatus> rings;
};

}  // namespace loopwatch::agent
