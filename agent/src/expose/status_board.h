// Hands the latest AgentStatus from the Asio thread (which owns the rings) to the CivetWeb threads
// that serve /api/status, without letting those threads touch the rings.
#pragma once

#include <mutex>

#include "expose/agent_status.h"

namespace loopwatch::agent {

// Thread safe: Publish and Snapshot may be called from any thread.
class StatusBoard {
 public:
  StatusBoard() = default;
  StatusBoard(const StatusBoard&) = delete;
  StatusBoard& operator=(const StatusBoard&) = delete;

  void Publish(AgentStatus status);
  AgentStatus Snapshot() const;

 private:
  mutable std::mutex mutex_;
  AgentStatus status_;  // guarded by mutex_
};

}  // namespace loopwatch::agent
