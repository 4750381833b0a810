// The sample being timed right now on this thread, if any. Set by the hooks around each callback.
// A protocol method wrapper that finds one (asyncio: data_received runs inside the selector's
// _read_ready handle) renames that sample after itself instead of recording a nested one, so time is
// attributed to the innermost named callback and never counted twice.
#pragma once

#include "loopwatch/layout.h"

namespace loopwatch::shim {

extern thread_local protocol::Sample* t_current_sample __attribute__((tls_model("initial-exec")));

// Restores the previous value on scope exit (nested loops: run_until_complete inside a callback).
class CurrentSampleScope {
 public:
  explicit CurrentSampleScope(protocol::Sample* sample) : previous_(t_current_sample) { t_current_sample = sample; }
  ~CurrentSampleScope() { t_current_sample = previous_; }
  CurrentSampleScope(const CurrentSampleScope&) = delete;
  CurrentSampleScope& operator=(const CurrentSampleScope&) = delete;

 private:
  protocol::Sample* previous_;
};

}  // namespace loopwatch::shim
