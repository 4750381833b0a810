// The agent's HTTP endpoints, served from the Exposer's own CivetWeb server. prometheus::Exposer
// takes a `const CivetCallbacks*`; our begin_request callback answers the agent's URIs (/metrics with
// the fast writer of text_exposition.h, and a table of JSON routes such as /api/status) and returns 0
// for every other one, so the Exposer 404s the rest. No document root is configured: CivetWeb serves
// no files and lists no directories.
//
// CivetWeb's begin_request carries no user pointer the Exposer lets us set, so the active HttpApi is
// found through a process-wide slot: at most one HttpApi may exist at a time, and it must outlive the
// Exposer that uses its callbacks (declare it first).
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <CivetServer.h>

namespace loopwatch::agent {

struct HttpRequest {
  std::string_view method;
  std::string_view query;     // after '?', undecoded ("" if none)
  bool from_loopback = false;  // the peer is 127.0.0.0/8 or ::1
  // The decoded value of query parameter `name`, or "" if absent.
  std::string Param(const char* name) const;
};

struct HttpResponse {
  int code = 200;
  std::string content_type = "application/json";
  std::string body;
  // More response headers (name, value), e.g. a Content-Security-Policy. Set by the agent's own code
  // only: never put request data here (no CR/LF checks are made).
  std::vector<std::pair<std::string, std::string>> headers = {};
};

struct HttpRoute {
  std::string uri;                    // exact match
  std::vector<std::string> methods;   // e.g. {"GET", "HEAD"}; others get 405
  std::function<HttpResponse(const HttpRequest&)> handler;  // called on CivetWeb threads: thread safe
};

class HttpApi {
 public:
  // Appends the /metrics body (text format 0.0.4) to a buffer. Called on CivetWeb threads.
  using MetricsSource = std::function<void(std::string& out)>;

  HttpApi(MetricsSource metrics, std::vector<HttpRoute> routes);
  ~HttpApi();
  HttpApi(const HttpApi&) = delete;
  HttpApi& operator=(const HttpApi&) = delete;

  const CivetCallbacks* callbacks() const { return &callbacks_; }

 private:
  static int BeginRequest(mg_connection* connection);
  int Serve(mg_connection* connection) const;
  int ServeMetrics(mg_connection* connection, bool head_only) const;

  const MetricsSource metrics_;
  const std::vector<HttpRoute> routes_;
  // One /metrics body buffer, reused: a fresh multi-MB buffer per scrape costs more in page faults
  // than writing it (measured ~30 ms vs ~3 ms with 64 loops). Scrapes take turns on it.
  mutable std::mutex metrics_mutex_;
  mutable std::string metrics_buffer_;
  CivetCallbacks callbacks_;
};

}  // namespace loopwatch::agent
