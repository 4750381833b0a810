// The request dispatch hooked into the Exposer's CivetWeb server; see http_api.h.
#include "expose/http_api.h"

#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <utility>

#include <civetweb.h>

namespace loopwatch::agent {
namespace {

constexpr std::string_view kMetricsUri = "/metrics";

// The one active HttpApi (see http_api.h). Acquire/release pair the constructor's publication
// with the CivetWeb threads' reads.
std::atomic<const HttpApi*> g_active{nullptr};

// nosniff on every response: a browser must not guess HTML into a JSON or text body that carries
// names taken from the rings.
void Reply(mg_connection* connection, int code, std::string_view reason, std::string_view type,
           std::string_view body, bool head_only,
           const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  std::string extra;
  for (const auto& [name, value] : headers) extra += name + ": " + value + "\r\n";
  mg_printf(connection,
            "HTTP/1.1 %d %.*s\r\nContent-Type: %.*s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
            "X-Content-Type-Options: nosniff\r\n%sConnection: close\r\n\r\n",
            code, static_cast<int>(reason.size()), reason.data(), static_cast<int>(type.size()), type.data(),
            body.size(), extra.c_str());
  if (!head_only) mg_write(connection, body.data(), body.size());
}

std::string_view Reason(int code) {
  switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 503: return "Service Unavailable";
    default: return code < 500 ? "Client Error" : "Internal Server Error";
  }
}

bool IsLoopback(const char* address) {
  in_addr v4{};
  if (inet_pton(AF_INET, address, &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  return std::strcmp(address, "::1") == 0;
}

}  // namespace

std::string HttpRequest::Param(const char* name) const {
  if (query.empty()) return {};
  char value[1024];
  const int length = mg_get_var(query.data(), query.size(), name, value, sizeof(value));
  return length >= 0 ? std::string(value, static_cast<std::size_t>(length)) : std::string();
}

HttpApi::HttpApi(MetricsSource metrics, std::vector<HttpRoute> routes)
    : metrics_(std::move(metrics)), routes_(std::move(routes)) {
  callbacks_.begin_request = &HttpApi::BeginRequest;
  const HttpApi* expected = nullptr;
  if (!g_active.compare_exchange_strong(expected, this, std::memory_order_acq_rel)) {
    throw std::logic_error("only one HttpApi may exist at a time");
  }
}

HttpApi::~HttpApi() {
  const HttpApi* self = this;
  g_active.compare_exchange_strong(self, nullptr, std::memory_order_acq_rel);
}

int HttpApi::BeginRequest(mg_connection* connection) {
  const HttpApi* api = g_active.load(std::memory_order_acquire);
  return api == nullptr ? 0 : api->Serve(connection);
}

int HttpApi::Serve(mg_connection* connection) const {
  const mg_request_info* info = mg_get_request_info(connection);
  if (info == nullptr || info->local_uri == nullptr) return 0;
  const std::string_view uri = info->local_uri;
  const std::string_view method = info->request_method != nullptr ? info->request_method : "";
  const bool head_only = method == "HEAD";
  if (uri == kMetricsUri) {
    if (method != "GET" && !head_only) {
      Reply(connection, 405, Reason(405), "text/plain", "only GET and HEAD\n", false);
      return 405;
    }
    return ServeMetrics(connection, head_only);
  }
  const auto route = std::find_if(routes_.begin(), routes_.end(), [uri](const HttpRoute& r) { return r.uri == uri; });
  if (route == routes_.end()) return 0;  // the Exposer answers 404
  if (std::find(route->methods.begin(), route->methods.end(), method) == route->methods.end()) {
    std::string allowed;
    for (const std::string& m : route->methods) allowed += (allowed.empty() ? "" : ", ") + m;
    Reply(connection, 405, Reason(405), "text/plain", "allowed: " + allowed + "\n", false);
    return 405;
  }
  HttpRequest request;
  request.method = method;
  request.query = info->query_string != nullptr ? info->query_string : "";
  request.from_loopback = IsLoopback(info->remote_addr);
  HttpResponse response;
  try {
    response = route->handler(request);
  } catch (const std::exception& e) {
    response = {500, "text/plain", std::string(e.what()) + "\n"};
  }
  Reply(connection, response.code, Reason(response.code), response.content_type, response.body, head_only,
        response.headers);
  return response.code;
}

int HttpApi::ServeMetrics(mg_connection* connection, bool head_only) const {
  std::lock_guard<std::mutex> lock(metrics_mutex_);
  metrics_buffer_.clear();  // keeps its capacity
  try {
    metrics_(metrics_buffer_);
  } catch (const std::exception& e) {
    Reply(connection, 500, Reason(500), "text/plain", std::string(e.what()) + "\n", head_only);
    return 500;
  }
  Reply(connection, 200, Reason(200), "text/plain; version=0.0.4; charset=utf-8", metrics_buffer_, head_only);
  return 200;
}

}  // namespace loopwatch::agent
