// One ring file, owned by the shim: created, mapped and locked when a loop runs its first callback,
// released when the loop goes away. Holding a write lock on the file is how the agent tells a live
// writer from a dead one (F_GETLK), so the file descriptor stays open for the ring's life. It is an
// open-file-description lock (F_OFD_SETLK): a classic POSIX lock would be released when the process
// closed ANY descriptor of the file (a reader of its own ring, a backup tool), making the agent retire
// a live ring. A forked child drops its inherited copy of the descriptor (AbandonAfterFork).
#pragma once

#include <cstdint>
#include <string>

#include "loopwatch/layout.h"
#include "loopwatch/name_table.h"
#include "loopwatch/ring.h"

namespace loopwatch::shim {

struct RingIdentity {
  std::string dir;
  std::string service;
  uint32_t loop_id = 0;
  protocol::LoopKind loop_kind = protocol::LoopKind::kAsyncio;
  protocol::RingGeometry geometry = protocol::kDefaultGeometry;
};

class RingFile {
 public:
  // Creates, sizes (posix_fallocate: ENOSPC is an error here, never a SIGBUS later), maps and locks
  // the file, fills the header and publishes it. On failure returns nullptr and sets `error`.
  static RingFile* Create(const RingIdentity& identity, std::string* error);

  RingFile(const RingFile&) = delete;
  RingFile& operator=(const RingFile&) = delete;
  ~RingFile();

  // Loop thread only.
  protocol::RingWriter& writer() { return writer_; }
  protocol::NameTableWriter& names() { return names_; }
  protocol::RingHeader* header() { return header_; }
  const std::string& path() const { return path_; }

  // Marks the ring closed for the agent, unmaps, closes (dropping the lock). The agent then drains
  // what is left and removes the file; if no agent ever attached, the file is removed here.
  void Close();
  // In a child after fork(): the mapping and descriptor belong to the parent's ring. Forget them
  // without touching the file (the child holds no lock on it; the parent still writes it).
  void AbandonAfterFork();

 private:
  RingFile() = default;

  std::string path_;
  int fd_ = -1;
  void* base_ = nullptr;
  uint64_t size_ = 0;
  protocol::RingHeader* header_ = nullptr;
  protocol::RingWriter writer_;
  protocol::NameTableWriter names_;
};

// "lw-<pid>-<process start ticks>-<loop id>.ring": a reused pid never collides with a dead one.
std::string RingFileName(int pid, uint64_t process_start_ticks, uint32_t loop_id);
uint64_t ProcessStartTicks();

}  // namespace loopwatch::shim
