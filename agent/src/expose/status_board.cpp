// Mutex-guarded status snapshot; see status_board.h.
#include "expose/status_board.h"

#include <utility>

namespace loopwatch::agent {

void StatusBoard::Publish(AgentStatus status) {
  std::lock_guard<std::mutex> lock(mutex_);
  status_ = std::move(status);
}

AgentStatus StatusBoard::Snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return status_;
}

}  // namespace loopwatch::agent
