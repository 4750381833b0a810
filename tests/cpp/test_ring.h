// Test support: builds real ring files the way the shim does (RingGeometry layout, header filled,
// magic stored last with release), temporary directories, and a forked child that holds a ring's
// writer lock (F_GETLK never reports the caller's own locks, so the test process cannot hold it).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loopwatch/layout.h"
#include "loopwatch/name_table.h"
#include "loopwatch/ring.h"

namespace loopwatch::testing {

// A fresh directory under /tmp, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct TestRingOptions {
  protocol::RingGeometry geometry{.ring_capacity = 1024, .names_capacity = 4096, .report_capacity = 0};
  std::string service = "checkout";
  int32_t pid = 4242;
  uint32_t loop_id = 1;
  int32_t thread_id = 4243;
  protocol::LoopKind kind = protocol::LoopKind::kUvloop;
  protocol::ClockKind clock = protocol::ClockKind::kMonotonicNs;
  double ns_per_tick = 1.0;
  bool publish = true;  // store the magic (false: leave the file "not ready")
  uint16_t version_minor = protocol::kVersionMinor;  // an older writer's file (< 3: no attribution table)
};

// Fills `bytes` (file_size bytes, zeroed) with a valid header for `options`, magic last (release).
void FillHeader(void* bytes, const TestRingOptions& options);
// A ring file image in memory, aligned like a mapping, for protocol tests without files.
class RingImage {
 public:
  explicit RingImage(const TestRingOptions& options = {});
  unsigned char* data() { return reinterpret_cast<unsigned char*>(blocks_.data()); }
  uint64_t size() const { return blocks_.size() * sizeof(Block); }
  protocol::RingHeader* header() { return reinterpret_cast<protocol::RingHeader*>(blocks_.data()); }
  protocol::Sample* records() { return reinterpret_cast<protocol::Sample*>(data() + header()->ring_offset); }
  unsigned char* names() { return data() + header()->names_offset; }

 private:
  struct alignas(protocol::kCacheLine) Block {
    unsigned char bytes[protocol::kCacheLine];
  };
  std::vector<Block> blocks_;
};

// A ring file on disk, mapped by the test as its writer.
class TestRing {
 public:
  TestRing(const std::string& path, const TestRingOptions& options = {});
  ~TestRing();
  TestRing(const TestRing&) = delete;
  TestRing& operator=(const TestRing&) = delete;

  const std::string& path() const { return path_; }
  protocol::RingHeader* header() { return header_; }
  protocol::RingWriter& writer() { return writer_; }
  protocol::NameTableWriter& names() { return names_; }
  void Publish();  // stores the magic if the options said not to

  // Pushes one sample; returns TryPush's answer. Samples start one after the other unless
  // `start_ticks` is given.
  bool Push(uint64_t duration_ticks, uint32_t name_id = protocol::kNameIdOther,
            uint64_t lag_ticks = protocol::kLagUnknown, uint32_t handles = 1, uint64_t start_ticks = 0);

 private:
  std::string path_;
  int fd_ = -1;
  void* base_ = nullptr;
  uint64_t size_ = 0;
  protocol::RingHeader* header_ = nullptr;
  protocol::RingWriter writer_;
  protocol::NameTableWriter names_;
  uint64_t next_start_ = 1000;
};

// A child process holding an F_WRLCK over the whole file at `path` until Release() or destruction.
class LockHolder {
 public:
  explicit LockHolder(const std::string& path);
  ~LockHolder();
  LockHolder(const LockHolder&) = delete;
  LockHolder& operator=(const LockHolder&) = delete;

  bool locked() const { return locked_; }
  // Makes the child exit (which drops its lock) and reaps it.
  void Release();

 private:
  pid_t child_ = -1;
  int command_fd_ = -1;  // closing it tells the child to exit
  bool locked_ = false;
};

}  // namespace loopwatch::testing
