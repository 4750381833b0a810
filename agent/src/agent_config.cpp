// CLI11 definition of the agent's flags; see agent_config.h.
#include "agent_config.h"

#include <arpa/inet.h>

#include <charconv>
#include <iostream>

#include <CLI/CLI.hpp>
#include <civetweb.h>

#include "version.h"

namespace loopwatch::agent {
namespace {

constexpr unsigned kCivetWebIpv6Feature = 8;  // mg_check_feature bit for IPv6

}  // namespace

std::optional<ListenAddress> ParseListenAddress(std::string_view text, std::string* error) {
  const auto fail = [&](std::string message) -> std::optional<ListenAddress> {
    if (error != nullptr) *error = std::move(message);
    return std::nullopt;
  };
  const std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return fail("listen address must be HOST:PORT, got '" + std::string(text) + "'");
  const std::string_view host_part = text.substr(0, colon);
  const std::string_view port_part = text.substr(colon + 1);
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(port_part.data(), port_part.data() + port_part.size(), port);
  if (port_part.empty() || ec != std::errc() || end != port_part.data() + port_part.size() || port > 65535) {
    return fail("listen address port must be 0..65535, got '" + std::string(port_part) + "'");
  }
  ListenAddress address;
  address.port = static_cast<uint16_t>(port);
  unsigned char buffer[16];
  if (host_part.size() > 2 && host_part.front() == '[' && host_part.back() == ']') {
    address.host = std::string(host_part.substr(1, host_part.size() - 2));
    if (inet_pton(AF_INET6, address.host.c_str(), buffer) != 1) return fail("not an IPv6 address: '" + address.host + "'");
    address.civetweb_spec = "[" + address.host + "]:" + std::to_string(port);
    return address;
  }
  address.host = std::string(host_part);
  std::string ip = address.host == "localhost" ? "127.0.0.1" : address.host;
  if (inet_pton(AF_INET, ip.c_str(), buffer) != 1) {
    return fail("listen address host must be an IPv4 address, [IPv6] or localhost, got '" + address.host + "'");
  }
  address.civetweb_spec = ip + ":" + std::to_string(port);
  return address;
}

ConfigParse ParseAgentConfig(int argc, const char* const* argv) {
  AgentConfig config;
  CLI::App app{"loopwatch-agent: drains loopwatch ring files and serves Prometheus metrics", "loopwatch-agent"};
  app.set_version_flag("--version", std::string(kAgentVersion));
  app.option_defaults()->always_capture_default();

  app.add_option("--web.listen-address", config.listen_address, "Address to serve /metrics and /api/status on (HOST:PORT, port 0 picks a free port)")
      ->envname("LOOPWATCH_AGENT_LISTEN")
      ->check([](const std::string& value) {
        std::string error;
        const auto address = ParseListenAddress(value, &error);
        if (!address) return error;
        // Debian's CivetWeb is built without IPv6: say so instead of failing to bind later.
        if (address->civetweb_spec.front() == '[' && mg_check_feature(kCivetWebIpv6Feature) == 0) {
          return std::string("this build's web server (CivetWeb) has no IPv6 support; use an IPv4 address");
        }
        return std::string();
      });
  app.add_option("--ring.dir", config.ring_dir, "Directory of the ring files (created with mode 0700 if missing)")
      ->envname("LOOPWATCH_DIR")
      ->check([](const std::string& value) { return value.empty() ? std::string("must not be empty") : std::string(); });
  app.add_option("--ring.allowed-uids", config.allowed_uids,
                 "Owners (numeric uids, comma-separated) whose ring files are read; default: the agent's own uid")
      ->envname("LOOPWATCH_AGENT_ALLOWED_UIDS")
      ->delimiter(',')
      ->check(CLI::Range(0u, 4294967294u));
  app.add_option("--drain.interval", config.drain_interval_ms, "Milliseconds between drain cycles")
      ->envname("LOOPWATCH_DRAIN_INTERVAL")
      ->check(CLI::Range(1, 10000));
  app.add_option("--scan.interval", config.scan_interval_ms, "Milliseconds between directory scans and liveness checks")
      ->envname("LOOPWATCH_SCAN_INTERVAL")
      ->check(CLI::Range(10, 60000));
  app.add_option("--callbacks.top-k", config.top_k, "Callback names per loop with their own series (the rest is \"other\")")
      ->envname("LOOPWATCH_TOP_K")
      ->check(CLI::Range(1, 1000));
  app.add_option("--slow.threshold", config.slow_threshold_ms, "Milliseconds from which a callback counts as slow")
      ->envname("LOOPWATCH_SLOW_THRESHOLD")
      ->check(CLI::Range(0.001, 3600000.0));
  app.add_option("--slow.arm-threshold", config.arm_threshold_ms,
                 "Milliseconds from which a running callback's stack is sampled (default: half of --slow.threshold)")
      ->envname("LOOPWATCH_SLOW_ARM_THRESHOLD")
      ->check(CLI::Range(0.001, 3600000.0));
  app.add_option("--slow.sample-interval", config.sample_interval_ms,
                 "Milliseconds between two stack samples of a slow callback")
      ->envname("LOOPWATCH_SLOW_SAMPLE_INTERVAL")
      ->check(CLI::Range(1.0, 10000.0));
  app.add_option("--slow.sample-limit", config.sample_limit, "Stack samples per slow callback at most")
      ->envname("LOOPWATCH_SLOW_SAMPLE_LIMIT")
      ->check(CLI::Range(1, 1000000));
  app.add_option("--slow.watch-interval", config.watch_interval_ms,
                 "Milliseconds between two looks at every loop's running callback (arming, stalls)")
      ->envname("LOOPWATCH_SLOW_WATCH_INTERVAL")
      ->check(CLI::Range(1, 1000));
  app.add_option("--slow.event-threshold", config.slow_event_threshold_ms,
                 "Milliseconds from which a callback is recorded as an event for /api/slow")
      ->envname("LOOPWATCH_SLOW_EVENT_THRESHOLD")
      ->check(CLI::Range(0.001, 3600000.0));
  app.add_option("--slow.keep", config.slow_keep, "Slow-callback events /api/slow keeps (the newest)")
      ->envname("LOOPWATCH_SLOW_KEEP")
      ->check(CLI::Range(1, 100000));
  app.add_option("--stall.threshold", config.stall_threshold_ms,
                 "Milliseconds a callback may run before it counts as a stall and its loop's stack is captured")
      ->envname("LOOPWATCH_STALL_THRESHOLD")
      ->check(CLI::Range(1.0, 3600000.0));
  app.add_option("--stall.keep", config.stall_keep, "Stall reports /api/stalls keeps (the newest)")
      ->envname("LOOPWATCH_STALL_KEEP")
      ->check(CLI::Range(1, 10000));
  app.add_flag("--web.enable-control", config.enable_control,
               "Serve POST /api/control (pause/resume a process's shim), to loopback clients only")
      ->envname("LOOPWATCH_ENABLE_CONTROL");
  app.add_option("--log.level", config.log_level, "Log level")
      ->envname("LOOPWATCH_LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e, std::cout, std::cerr);
    return {std::nullopt, code == 0 ? 0 : 2};
  }
  if (config.arm_threshold_ms < 0) config.arm_threshold_ms = config.slow_threshold_ms / 2;
  return {config, 0};
}

}  // namespace loopwatch::agent
