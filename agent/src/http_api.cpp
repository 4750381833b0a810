// The /api/status handler hooked into the Exposer's CivetWeb server; see http_api.h.
#include "http_api.h"

#include <atomic>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <utility>

#include <civetweb.h>

namespace loopwatch::agent {
namespace {

constexpr std::string_view kStatusUri = "/api/status";
constexpr std::string_view kMetricsUri = "/metrics";

// The one active HttpApi (see http_api.h). Acquire/release pair the constructor's publication
// with the CivetWeb threads' reads.
std::atomic<const HttpApi*> g_active{nullptr};

void Reply(mg_connection* connection, int code, std::string_view reason, std::string_view type,
           std::string_view body, bool head_only) {
  mg_printf(connection,
            "HTTP/1.1 %d %.*s\r\nContent-Type: %.*s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
            "Connection: close\r\n\r\n",
            code, static_cast<int>(reason.size()), reason.data(), static_cast<int>(type.size()), type.data(),
            body.size());
  if (!head_only) mg_write(connection, body.data(), body.size());
}

}  // namespace

HttpApi::HttpApi(StatusSource status, MetricsSource metrics) : status_(std::move(status)), metrics_(std::move(metrics)) {
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
  const mg_request_info* request = mg_get_request_info(connection);
  if (request == nullptr || request->local_uri == nullptr) return 0;
  const std::string_view uri = request->local_uri;
  const bool is_status = uri == kStatusUri;
  if (!is_status && uri != kMetricsUri) return 0;
  const std::string_view method = request->request_method != nullptr ? request->request_method : "";
  if (method != "GET" && method != "HEAD") {
    Reply(connection, 405, "Method Not Allowed", "text/plain", "only GET and HEAD\n", false);
    return 405;
  }
  std::string status_body;
  std::unique_lock<std::mutex> metrics_lock(metrics_mutex_, std::defer_lock);
  try {
    if (is_status) {
      status_body = status_();
    } else {
      metrics_lock.lock();
      metrics_buffer_.clear();  // keeps its capacity
      metrics_(metrics_buffer_);
    }
  } catch (const std::exception& e) {
    Reply(connection, 500, "Internal Server Error", "text/plain", std::string(e.what()) + "\n", method == "HEAD");
    return 500;
  }
  Reply(connection, 200, "OK", is_status ? "application/json" : "text/plain; version=0.0.4; charset=utf-8",
        is_status ? status_body : metrics_buffer_, method == "HEAD");
  return 200;
}

}  // namespace loopwatch::agent
