// One place that refuses a ring file: logs one warning with the path and the reason, counts it in
// loopwatch_agent_rings_refused_total{reason}, and remembers the file so that the next scans skip it
// (and neither log nor count it again) until it changes.
#pragma once

#include <string>
#include <string_view>

#include "expose/agent_metrics.h"
#include "discover/file_identity.h"
#include "discover/ring_directory.h"

namespace loopwatch::agent {

// Not thread safe: Asio thread only.
class Refusals {
 public:
  Refusals(RingDirectory& directory, AgentMetrics& metrics) : directory_(directory), metrics_(metrics) {}
  Refusals(const Refusals&) = delete;
  Refusals& operator=(const Refusals&) = delete;

  // `whole_life`: the file was refused after it was mapped (corrupt); skip it until it is replaced,
  // whatever its writer keeps changing. Returns true if this refusal was new (logged and counted).
  bool Refuse(const std::string& name, const std::string& path, const FileIdentity& identity,
              std::string_view reason, bool whole_life = false, std::string_view detail = {});

 private:
  RingDirectory& directory_;
  AgentMetrics& metrics_;
};

}  // namespace loopwatch::agent
