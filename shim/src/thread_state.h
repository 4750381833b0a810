// What the kernel says a thread is doing, for stall reports: its scheduler state (field 3 of
// /proc/self/task/<tid>/stat: R running, S sleeping, D uninterruptible, ...) and its wchan (the
// kernel function it sleeps in; "0" when running or when the kernel hides it). Read by the watchdog
// thread BEFORE it asks for the GIL: a thread that spins in Python looks asleep (waiting for the
// GIL) once the watchdog wants the GIL too. Free of Python.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace loopwatch::shim {

struct ThreadState {
  std::string state;  // one letter; empty if the thread could not be read (gone)
  std::string wchan;  // as the kernel printed it (printable ASCII only), empty if unreadable
};

// Reads the state `reads` times, `interval_ns` apart (a thread that runs in bursts is seen running
// if any read catches it: "R" wins, otherwise the last state read), then the wchan once. Stops early
// when `*stop` becomes true.
ThreadState ReadThreadState(int tid, int reads, uint64_t interval_ns, const std::atomic<bool>* stop);

// The state letter of a /proc/<pid>/stat line ("" if malformed): the command name (field 2) may hold
// spaces and parentheses, so the state is the first field after the LAST ')'.
std::string StateFromStatLine(const std::string& stat);

}  // namespace loopwatch::shim
