// One ring file mapped into the agent: opened without following symlinks, accepted only if it is a
// regular file owned by an allowed user whose header passes CheckHeader against the real file length,
// then mapped whole (MAP_SHARED, read-write: the agent publishes read_pos) under the SIGBUS guard, so
// a file truncated while mapped is detected instead of crashing the agent. Owns the descriptor and
// the mapping.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "discover/file_identity.h"
#include "discover/guarded_mapping.h"
#include "loopwatch/attribution.h"
#include "loopwatch/header_check.h"
#include "loopwatch/layout.h"
#include "loopwatch/name_table.h"
#include "loopwatch/ring.h"
#include "discover/owner_policy.h"

namespace loopwatch::agent {

class RingFile;

struct RingOpenResult {
  std::unique_ptr<RingFile> ring;  // set when the file was accepted
  bool vanished = false;           // the path no longer exists (removed between scan and open)
  std::string_view reason;         // refusal label when neither accepted nor vanished
  protocol::HeaderError header_error = protocol::HeaderError::kOk;
  bool have_identity = false;      // identity below comes from fstat of the opened file
  FileIdentity identity;
  int error_number = 0;            // errno of a failed open/fstat/mmap
};

// Not thread safe: owned and used by the agent's drain thread.
class RingFile {
 public:
  static RingOpenResult Open(const std::string& path, const OwnerPolicy& owners);

  ~RingFile();
  RingFile(const RingFile&) = delete;
  RingFile& operator=(const RingFile&) = delete;

  const std::string& path() const { return path_; }
  int fd() const { return fd_; }
  const FileIdentity& identity() const { return identity_; }
  // The validated immutable part of the header.
  const protocol::HeaderSnapshot& header() const { return header_; }
  // The live shared words (dropped, writer_flags, positions); the writer changes them concurrently.
  protocol::RingHeader& live_header() { return *static_cast<protocol::RingHeader*>(mapping_->data()); }
  const protocol::RingHeader& live_header() const { return *static_cast<const protocol::RingHeader*>(mapping_->data()); }
  // The report region (header().report_capacity bytes; CheckHeader proved it lies in the mapping).
  // v1.3: the attribution table (attribution_capacity bytes; check it is non-zero first).
  const protocol::AttributionSlot* attribution_table() const {
    return reinterpret_cast<const protocol::AttributionSlot*>(static_cast<const unsigned char*>(mapping_->data()) +
                                                              header_.attribution_offset);
  }
  unsigned char* report_region() { return static_cast<unsigned char*>(mapping_->data()) + header_.report_offset; }
  protocol::RingReader& reader() { return reader_; }
  protocol::NameTableReader& names() { return names_; }
  // Samples written but not drained yet (0 if the positions are inconsistent).
  uint64_t Backlog() const;

  // True when the file no longer covers the whole mapping: it is shorter now (fstat), or a page of the
  // mapping already faulted (BusErrorGuard). What the agent read from such a ring is not trustworthy.
  bool Truncated() const;
  // Only the second half of Truncated(), without a system call.
  bool Faulted() const { return mapping_->faulted(); }

  // Removes the directory entry if it still names this very file (not a replacement).
  bool UnlinkIfUnchanged() const;

  // Drops the agent's mapping of ring pages it has drained (MADV_DONTNEED on a shared tmpfs mapping
  // only unmaps them from this process; the data stays in the file for the writer). Without it every
  // ring page the writer ever touched counts in the agent's RSS: 4 MiB per default ring. Releases
  // whole 64 KiB windows, at least two at a time: one syscall per 128 KiB drained.
  void ReleaseDrainedPages();

 private:
  RingFile(std::string path, int fd, std::unique_ptr<GuardedMapping> mapping, const FileIdentity& identity,
           const protocol::HeaderSnapshot& header);

  const std::string path_;
  const int fd_;
  const std::unique_ptr<GuardedMapping> mapping_;
  const FileIdentity identity_;
  const protocol::HeaderSnapshot header_;
  protocol::RingReader reader_;
  protocol::NameTableReader names_;
  uint64_t released_pos_;  // ring pages before this record position are released
};

}  // namespace loopwatch::agent
