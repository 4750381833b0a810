// The agent's command line: every setting is a dotted flag (--web.listen-address, ...) that can also
// come from a LOOPWATCH_* environment variable; bad flags or values are a clear message and exit 2.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace loopwatch::agent {

struct AgentConfig {
  std::string listen_address = "127.0.0.1:9477";
  std::string ring_dir = "/dev/shm/loopwatch";
  std::vector<uint32_t> allowed_uids;  // empty: the agent's own effective uid (owner_policy.h)
  uint32_t drain_interval_ms = 50;
  uint32_t scan_interval_ms = 500;
  uint32_t top_k = 20;
  double slow_threshold_ms = 100;
  double arm_threshold_ms = -1;  // -1: half of slow_threshold_ms
  double sample_interval_ms = 10;
  uint32_t sample_limit = 1000;
  uint32_t watch_interval_ms = 10;
  double slow_event_threshold_ms = 500;
  uint32_t slow_keep = 1000;
  double stall_threshold_ms = 1000;
  uint32_t stall_keep = 100;
  bool enable_control = false;
  std::string log_level = "info";
};

// A listen address split into what the log line shows and what CivetWeb's listening_ports wants.
struct ListenAddress {
  std::string host;           // as given (IPv6 without brackets)
  uint16_t port = 0;          // 0: pick a free port
  std::string civetweb_spec;  // "127.0.0.1:9477", "[::1]:9477"
};

// Accepts "IPV4:PORT", "[IPV6]:PORT" and "localhost:PORT" (PORT 0..65535). Thread safe.
std::optional<ListenAddress> ParseListenAddress(std::string_view text, std::string* error);

struct ConfigParse {
  std::optional<AgentConfig> config;  // set when the agent should run
  int exit_code = 0;                  // otherwise: exit with this (0 after --help/--version, 2 on errors)
};

// Parses argv (and the environment). Prints help, version or the error itself. Not thread safe
// (reads the environment).
ConfigParse ParseAgentConfig(int argc, const char* const* argv);

}  // namespace loopwatch::agent
