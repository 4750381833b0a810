// loopwatch-agent's entry point: parses the flags, prepares the ring directory, starts the web
// server (prometheus::Exposer's CivetWeb serving /metrics and the /api/* routes), then runs the scan and drain
// timers on one Asio thread until SIGINT or SIGTERM, and exits 0.
#include <signal.h>

// GCC 12 needs <utility> before Asio (see ENVIRONMENT.md).
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include <chrono>
#include <exception>
#include <future>
#include <optional>
#include <memory>
#include <string>

#include <prometheus/exposer.h>
#include <spdlog/spdlog.h>

#include "agent.h"
#include "agent_config.h"
#include "expose/agent_routes.h"
#include "expose/http_api.h"
#include "periodic_timer.h"
#include "discover/ring_directory.h"
#include "version.h"

namespace {

using loopwatch::agent::Agent;
using loopwatch::agent::AgentOptions;
using loopwatch::agent::AgentRoutes;
using loopwatch::agent::AgentConfig;
using loopwatch::agent::HttpApi;
using loopwatch::agent::PeriodicTimer;

int Run(const AgentConfig& config) {
  const auto address = loopwatch::agent::ParseListenAddress(config.listen_address, nullptr);  // validated by CLI11
  std::string error;
  if (!loopwatch::agent::EnsureRingDirectory(config.ring_dir, &error)) {
    spdlog::error("{}", error);
    return 1;
  }

  AgentOptions options;
  options.ring_dir = config.ring_dir;
  options.aggregation = {config.top_k, config.slow_threshold_ms / 1000.0, config.slow_event_threshold_ms / 1000.0};
  options.owners = {config.allowed_uids};
  options.stalls.stall_threshold_seconds = config.stall_threshold_ms / 1000.0;
  options.stalls.name_threshold_seconds = config.slow_threshold_ms / 1000.0;
  options.stalls.arm_threshold_seconds = config.arm_threshold_ms / 1000.0;
  options.stalls.sample_interval_us = static_cast<uint32_t>(config.sample_interval_ms * 1000.0);
  options.stalls.sample_limit = config.sample_limit;
  options.stall_log_size = config.stall_keep;
  options.slow_log_size = config.slow_keep;
  Agent agent(options);

  boost::asio::io_context io;
  // Control requests change rings, which only the Asio thread touches: run them there and wait.
  auto run_on_agent_thread = [&io](std::function<nlohmann::json()> job) -> std::optional<nlohmann::json> {
    auto promise = std::make_shared<std::promise<nlohmann::json>>();
    std::future<nlohmann::json> result = promise->get_future();
    boost::asio::post(io, [promise, job = std::move(job)] {
      try {
        promise->set_value(job());
      } catch (...) {  // never out of io.run(): the web thread gets it (and answers 500)
        promise->set_exception(std::current_exception());
      }
    });
    if (result.wait_for(std::chrono::seconds(2)) != std::future_status::ready) return std::nullopt;
    return result.get();
  };
  // Outlives the exposer (declared first). It serves /metrics itself (text_exposition.h) and the
  // JSON routes; the Exposer provides the CivetWeb server and 404s every other path.
  HttpApi api([&agent](std::string& out) { agent.AppendMetricsText(out); },
              AgentRoutes(agent, config.enable_control, run_on_agent_thread));
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(address->civetweb_spec, 2, api.callbacks());
  } catch (const std::exception& e) {
    spdlog::error("cannot listen on {}: {}", config.listen_address, e.what());
    return 1;
  }
  const auto ports = exposer->GetListeningPorts();
  const std::string host = address->host.find(':') != std::string::npos ? "[" + address->host + "]" : address->host;
  spdlog::info("loopwatch-agent {} listening on http://{}:{} (ring dir {}, drain every {} ms, scan every {} ms)",
               loopwatch::agent::kAgentVersion, host, ports.empty() ? 0 : ports.front(), config.ring_dir,
               config.drain_interval_ms, config.scan_interval_ms);

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&io](const boost::system::error_code& ec, int signal_number) {
    if (ec) return;
    spdlog::info("received signal {}, exiting", signal_number);
    io.stop();
  });
  PeriodicTimer scan(io, std::chrono::milliseconds(config.scan_interval_ms), [&agent] { agent.Scan(); });
  PeriodicTimer drain(io, std::chrono::milliseconds(config.drain_interval_ms), [&agent] { agent.Drain(); });
  PeriodicTimer watch(io, std::chrono::milliseconds(config.watch_interval_ms), [&agent] { agent.Watch(); });
  agent.Scan();
  agent.Drain();
  scan.Start();
  drain.Start();
  watch.Start();
  io.run();

  exposer.reset();  // stop serving before the agent goes away
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const auto parsed = loopwatch::agent::ParseAgentConfig(argc, argv);
  if (!parsed.config) return parsed.exit_code;
  spdlog::set_level(spdlog::level::from_str(parsed.config->log_level));
  signal(SIGPIPE, SIG_IGN);  // a scraper hanging up must not kill the agent
  try {
    return Run(*parsed.config);
  } catch (const std::exception& e) {
    spdlog::critical("fatal: {}", e.what());
    return 1;
  }
}
