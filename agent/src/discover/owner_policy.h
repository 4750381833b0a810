// Whose ring files the agent accepts. A ring's bytes become label values and steer the agent's reads,
// and the agent removes a dead writer's file: by default only files owned by the agent's own user are
// mapped; --ring.allowed-uids widens that to a list (e.g. an agent running as root that reads rings of
// app users). Anything else is refused as "owner_not_allowed".
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace loopwatch::agent {

struct OwnerPolicy {
  std::vector<uint32_t> allowed_uids;  // empty: the agent's effective uid only

  // Thread safe (const).
  bool Allows(uint32_t uid) const {
    if (allowed_uids.empty()) return uid == static_cast<uint32_t>(geteuid());
    return std::find(allowed_uids.begin(), allowed_uids.end(), uid) != allowed_uids.end();
  }
};

}  // namespace loopwatch::agent
