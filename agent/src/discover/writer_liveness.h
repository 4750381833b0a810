// Tells a dead writer from a quiet one. A shim holds a POSIX fcntl write lock over its whole ring
// file while its process is alive; the kernel drops the lock when the process exits, however it
// exits. The agent asks with F_GETLK: a conflicting lock means the writer is alive.
//
// Caveat: F_GETLK never reports the caller's own process' locks as conflicts, so a process cannot
// observe a lock it holds itself (tests fork a child to hold it).
#pragma once

#include <cstdint>

namespace loopwatch::agent {

enum class WriterState : uint8_t {
  kAlive = 1,  // some process holds a lock that conflicts with a read lock over the whole file
  kGone,       // nobody holds such a lock
  kUnknown,    // fcntl failed (errno is left set); callers keep their previous belief
};

// Thread safe (one fcntl call on `fd`, which must be open for reading).
WriterState QueryWriter(int fd);

}  // namespace loopwatch::agent
