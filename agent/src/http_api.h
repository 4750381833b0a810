// Serves GET /api/status and GET /metrics from the Exposer's own CivetWeb server. prometheus::Exposer
// takes a `const CivetCallbacks*`; our begin_request callback answers those two URIs and returns 0 for
// every other one, so the Exposer 404s the rest (no document root is configured). /metrics is served
// here so that it uses the fast writer of text_exposition.h.
//
// CivetWeb's begin_request carries no user pointer the Exposer lets us set, so the active HttpApi is
// found through a process-wide slot: at most one HttpApi may exist at a time, and it must outlive the
// Exposer that uses its callbacks (declare it first).
#pragma once

#include <functional>
#include <mutex>
#include <string>

#include <CivetServer.h>

namespace loopwatch::agent {

class HttpApi {
 public:
  // Produce the /api/status body, and append the /metrics body (text format 0.0.4) to a buffer.
  // Called on CivetWeb threads: must be thread safe.
  using StatusSource = std::function<std::string()>;
  using MetricsSource = std::function<void(std::string& out)>;

  HttpApi(StatusSource status, MetricsSource metrics);
  ~HttpApi();
  HttpApi(const HttpApi&) = delete;
  HttpApi& operator=(const HttpApi&) = delete;

  const CivetCallbacks* callbacks() const { return &callbacks_; }

 private:
  static int BeginRequest(mg_connection* connection);
  int Serve(mg_connection* connection) const;

  const StatusSource status_;
  const MetricsSource metrics_;
  // One /metrics body buffer, reused: a fresh multi-MB buffer per scrape costs more in page faults
  // than writing it (measured ~30 ms vs ~3 ms with 64 loops). Scrapes take turns on it.
  mutable std::mutex metrics_mutex_;
  mutable std::string metrics_buffer_;
  CivetCallbacks callbacks_;
};

}  // namespace loopwatch::agent
