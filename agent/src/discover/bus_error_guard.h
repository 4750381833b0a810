// A ring file's writer (or anyone with write access) can truncate the file while the agent has it
// mapped. Touching a mapped page that now lies past the end of the file raises SIGBUS, which would
// kill the agent and with it the metrics of every other worker. This guard makes such a fault
// harmless: a process-wide SIGBUS handler looks the faulting address up among the registered ring
// mappings, maps an anonymous zero page over the faulting page (the access then completes, reading
// zeros), and flags the mapping as faulted, so its owner retires the ring as "truncated". A fault at
// any other address is not ours: the previous disposition is restored and the fault recurs there.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace loopwatch::agent {

// One registered mapping. Written by the thread that owns the mapping, read by the signal handler
// on whichever thread faults.
struct GuardedRange {
  std::atomic<uintptr_t> begin{0};  // 0: slot free
  std::atomic<uintptr_t> end{0};
  std::atomic<bool> faulted{false};
};

class BusErrorGuard {
 public:
  // Slots for concurrently mapped rings; a ring beyond this many is refused ("too_many_rings").
  static constexpr std::size_t kMaxRanges = 4096;

  // Installs the handler once per process (thread safe, idempotent).
  static void Install();
  // Registers [begin, begin + length). Returns nullptr when every slot is taken. Thread safe.
  static GuardedRange* Register(const void* begin, std::size_t length);
  // Must be called before the range is unmapped. Thread safe.
  static void Unregister(GuardedRange* range);
  // Faults answered by the handler since start (all ranges).
  static uint64_t FaultsHandled();
};

}  // namespace loopwatch::agent
