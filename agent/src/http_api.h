// Serves GET /api/status from the Exposer's own CivetWeb server. prometheus::Exposer takes a
// `const CivetCallbacks*`; our begin_request callback answers /api/status and returns 0 for every
// other URI, so the Exposer serves /metrics (and 404s the rest: no document root is configured).
//
// CivetWeb's begin_request carries no user pointer the Exposer lets us set, so the active HttpApi is
// found through a process-wide slot: at most one HttpApi may exist at a time, and it must outlive the
// Exposer that uses its callbacks (declare it first).
#pragma once

#include <functional>
#include <string>

#include <CivetServer.h>

namespace loopwatch::agent {

class HttpApi {
 public:
  // Produces the /api/status body. Called on CivetWeb threads: must be thread safe.
  using StatusSource = std::function<std::string()>;

  explicit HttpApi(StatusSource status);
  ~HttpApi();
  HttpApi(const HttpApi&) = delete;
  HttpApi& operator=(const HttpApi&) = delete;

  const CivetCallbacks* callbacks() const { return &callbacks_; }

 private:
  static int BeginRequest(mg_connection* connection);
  int Serve(mg_connection* connection) const;

  const StatusSource status_;
  CivetCallbacks callbacks_;
};

}  // namespace loopwatch::agent
