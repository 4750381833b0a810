// One drain cycle over all rings; see drainer.h.
#include "drain/drainer.h"

namespace loopwatch::agent {

uint64_t Drainer::RunCycle(Clock::time_point now) {
  const auto started = Clock::now();
  uint64_t drained = 0;
  for (const auto& ring : rings_.rings()) {
    if (ring->phase() != RingPhase::kLive) continue;
    drained += ring->Drain(kCapacitiesPerCycle * ring->file().header().ring_capacity, now);
  }
  metrics_.CountDrained(drained);
  rings_.Sweep(scrapes_.scrapes(), now);
  metrics_.ObserveDrainCycle(std::chrono::duration<double>(Clock::now() - started).count());
  return drained;
}

}  // namespace loopwatch::agent
