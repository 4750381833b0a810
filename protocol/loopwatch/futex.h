// The wake-up channel of stall forensics: a futex on RingHeader::capture_request, which lives in the
// shared ring file. Shared (not FUTEX_PRIVATE) operations, because waiter (the shim's watchdog
// thread) and waker (the agent) are different processes mapping the same file.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <ctime>

namespace loopwatch::protocol {

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "a futex is a plain 32-bit word");

// Sleeps while *word == expected, at most `timeout_ns` (0: no limit). Returns on a wake, a change
// of the word, a signal or the timeout; the caller re-checks the word.
inline void FutexWait(std::atomic<uint32_t>* word, uint32_t expected, uint64_t timeout_ns = 0) {
  timespec timeout{static_cast<time_t>(timeout_ns / 1'000'000'000), static_cast<long>(timeout_ns % 1'000'000'000)};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, timeout_ns == 0 ? nullptr : &timeout,
          nullptr, 0);
}

// Wakes every waiter on `word`. Returns how many were woken (0 if none), or -1 on error.
inline int FutexWakeAll(std::atomic<uint32_t>* word) {
  return static_cast<int>(syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0));
}

}  // namespace loopwatch::protocol
