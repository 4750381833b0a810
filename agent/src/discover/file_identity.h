// What makes a directory entry "the same file" across scans: device and inode, plus size and mtime
// so that a refused file which is later rewritten gets looked at again.
#pragma once

#include <sys/stat.h>

#include <cstdint>

namespace loopwatch::agent {

struct FileIdentity {
  uint64_t device = 0;
  uint64_t inode = 0;
  int64_t size = 0;
  int64_t mtime_ns = 0;

  static FileIdentity FromStat(const struct stat& st) {
    return {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino), static_cast<int64_t>(st.st_size),
            static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
  }
  bool SameInode(const FileIdentity& other) const { return device == other.device && inode == other.inode; }
  bool operator==(const FileIdentity&) const = default;
};

}  // namespace loopwatch::agent
