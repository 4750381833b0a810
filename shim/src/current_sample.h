// The callback being timed right now on this thread, if any: its sample, the loop it belongs to, and
// the ring header whose in-flight slot it holds (inflight.h). Set by the hooks around each callback.
// A timed protocol method that finds one (asyncio: data_received runs inside the selector's
// _read_ready handle) renames that sample and its in-flight slot after itself instead of recording a
// nested one, so time is attributed to the protocol callback and never counted twice.
#pragma once

#include "loopwatch/layout.h"

namespace loopwatch::shim {

class LoopState;

struct TimedCallback {
  protocol::Sample sample{};
  protocol::RingHeader* inflight = nullptr;  // the header whose in-flight slot this callback owns, or nullptr
  LoopState* state = nullptr;                 // the loop whose ring the sample goes to (names come from it)
  uint64_t nested_ticks = 0;                  // time of samples recorded inside it (eager task steps): not its own
  bool named_by_protocol = false;             // a protocol method named it: nested ones do not rename it again
};

extern thread_local TimedCallback* t_current_callback __attribute__((tls_model("initial-exec")));

// Restores the previous value on scope exit (nested loops: run_until_complete inside a callback).
class CurrentCallbackScope {
 public:
  explicit CurrentCallbackScope(TimedCallback* timed) : previous_(t_current_callback) { t_current_callback = timed; }
  ~CurrentCallbackScope() { t_current_callback = previous_; }
  CurrentCallbackScope(const CurrentCallbackScope&) = delete;
  CurrentCallbackScope& operator=(const CurrentCallbackScope&) = delete;

 private:
  TimedCallback* previous_;
};

}  // namespace loopwatch::shim
