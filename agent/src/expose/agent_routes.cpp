// Route handlers of the agent's JSON endpoints; see agent_routes.h.
#include "expose/agent_routes.h"

#include <charconv>
#include <string>
#include <utility>

#include "expose/live_page.h"

namespace loopwatch::agent {
namespace {

HttpResponse Json(std::string body) { return {200, "application/json", std::move(body)}; }

HttpResponse Error(int code, const std::string& message) {
  return {code, "application/json", nlohmann::json{{"error", message}}.dump() + "\n"};
}

template <typename T>
std::optional<T> ParseNumber(const std::string& text) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// The live page may run its own inline script and style and fetch from this agent; nothing else
// (no external host, no frames, no plugins, no form posts).
HttpResponse LivePage() {
  return {200, "text/html; charset=utf-8", std::string(LivePageHtml()),
          {{"Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
            "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"},
           {"Referrer-Policy", "no-referrer"}}};
}

HttpResponse Control(Agent& agent, bool enabled, const AgentThreadRunner& run, const HttpRequest& request) {
  if (!enabled) return Error(403, "the control endpoint is off; start loopwatch-agent with --web.enable-control");
  if (!request.from_loopback) return Error(403, "the control endpoint answers loopback clients only");
  const std::string action = request.Param("action");
  if (action != "pause" && action != "resume") return Error(400, "action must be pause or resume");
  const auto pid = ParseNumber<int32_t>(request.Param("pid"));
  if (!pid || *pid <= 0) return Error(400, "pid must be a process id");
  std::optional<uint32_t> loop;
  if (const std::string text = request.Param("loop"); !text.empty()) {
    loop = ParseNumber<uint32_t>(text);
    if (!loop) return Error(400, "loop must be a loop id");
  }
  const bool pause = action == "pause";
  const std::optional<nlohmann::json> result =
      run([&agent, pid = *pid, loop, pause] { return agent.SetPaused(pid, loop, pause); });
  if (!result) return Error(503, "the agent did not get to the request in time; try again");
  if ((*result)["rings"].empty()) return Error(404, "no live ring of pid " + std::to_string(*pid));
  return Json(result->dump() + "\n");
}

}  // namespace

std::vector<HttpRoute> AgentRoutes(Agent& agent, bool control_enabled, AgentThreadRunner run_on_agent_thread) {
  const std::vector<std::string> get = {"GET", "HEAD"};
  return {
      {"/", get, [](const HttpRequest&) { return LivePage(); }},
      {"/api/status", get, [&agent](const HttpRequest&) { return Json(agent.StatusJson()); }},
      {"/api/stalls", get, [&agent](const HttpRequest&) { return Json(agent.StallsJson()); }},
      {"/api/slow", get, [&agent](const HttpRequest&) { return Json(agent.SlowJson()); }},
      {"/api/control", {"POST"},
       [&agent, control_enabled, run = std::move(run_on_agent_thread)](const HttpRequest& request) {
         return Control(agent, control_enabled, run, request);
       }},
  };
}

}  // namespace loopwatch::agent
