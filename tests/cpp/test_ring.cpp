// Test support implementation; see test_ring.h.
#include "test_ring.h"

#include "loopwatch/header_writer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <new>
#include <stdexcept>

namespace loopwatch::testing {

using protocol::RingHeader;

TempDir::TempDir() {
  char pattern[] = "/tmp/loopwatch-test-XXXXXX";
  if (mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void FillHeader(void* bytes, const TestRingOptions& o) {
  protocol::RingHeader* header = protocol::WriteRingHeader(bytes, o.geometry,
                            {.pid = o.pid,
                             .loop_id = o.loop_id,
                             .process_start_ticks = 777,
                             .loop_thread_id = o.thread_id,
                             .loop_kind = o.kind,
                             .clock_kind = o.clock,
                             .clock_ns_per_tick = o.ns_per_tick,
                             .created_unix_ns = 1,
                             .service = o.service},
                            /*publish=*/false);
  if (o.version_minor != protocol::kVersionMinor) {
    header->version_minor = o.version_minor;
    if (o.version_minor < 3) {  // reserved (zero) in older files
      header->attribution_offset = 0;
      header->attribution_capacity = 0;
    }
  }
  // Pairs with the reader's acquire load of magic in CheckHeader.
  if (o.publish) header->magic.store(protocol::kMagic, std::memory_order_release);
}

RingImage::RingImage(const TestRingOptions& options)
    : blocks_((options.geometry.file_size() + sizeof(Block) - 1) / sizeof(Block), Block{}) {
  FillHeader(blocks_.data(), options);
}

TestRing::TestRing(const std::string& path, const TestRingOptions& options) : path_(path) {
  size_ = options.geometry.file_size();
  // Like the shim: build under a dot-name the agent ignores, then rename into place.
  const std::filesystem::path final_path(path);
  const std::string tmp = (final_path.parent_path() / ("." + final_path.filename().string() + ".tmp")).string();
  fd_ = open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd_ < 0 || ftruncate(fd_, static_cast<off_t>(size_)) != 0) throw std::runtime_error("cannot create " + tmp);
  base_ = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (base_ == MAP_FAILED) throw std::runtime_error("cannot map " + tmp);
  FillHeader(base_, options);
  header_ = static_cast<RingHeader*>(base_);
  auto* bytes = static_cast<unsigned char*>(base_);
  writer_ = protocol::RingWriter(header_, reinterpret_cast<protocol::Sample*>(bytes + options.geometry.ring_offset()),
                                 options.geometry.ring_capacity);
  names_ = protocol::NameTableWriter(header_, bytes + options.geometry.names_offset(), options.geometry.names_capacity);
  if (rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot rename to " + path);
}

TestRing::~TestRing() {
  munmap(base_, size_);
  close(fd_);
}

void TestRing::Publish() { header_->magic.store(protocol::kMagic, std::memory_order_release); }

bool TestRing::Push(uint64_t duration_ticks, uint32_t name_id, uint64_t lag_ticks, uint32_t handles,
                    uint64_t start_ticks) {
  protocol::Sample s{};
  s.start_ticks = start_ticks != 0 ? start_ticks : next_start_;
  s.duration_ticks = duration_ticks;
  s.lag_ticks = lag_ticks;
  s.name_id = name_id;
  s.handles_kind = protocol::Sample::PackHandlesKind(handles, protocol::SampleKind::kReady);
  next_start_ += duration_ticks + 1;
  return writer_.TryPush(s);
}

LockHolder::LockHolder(const std::string& path) {
  int ready[2], command[2];
  if (pipe(ready) != 0 || pipe(command) != 0) throw std::runtime_error("pipe failed");
  const std::string path_copy = path;  // c_str() used in the child: no allocation after fork
  child_ = fork();
  if (child_ < 0) throw std::runtime_error("fork failed");
  if (child_ == 0) {
    close(ready[0]);
    close(command[1]);
    char status = 'n';
    const int fd = open(path_copy.c_str(), O_RDWR | O_CLOEXEC);
    struct flock lock {};
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    if (fd >= 0 && fcntl(fd, F_SETLK, &lock) == 0) status = 'y';
    (void)!write(ready[1], &status, 1);
    char byte;
    while (read(command[0], &byte, 1) > 0) {
    }
    _exit(0);
  }
  close(ready[1]);
  close(command[0]);
  command_fd_ = command[1];
  char status = 'n';
  locked_ = read(ready[0], &status, 1) == 1 && status == 'y';
  close(ready[0]);
}

LockHolder::~LockHolder() { Release(); }

void LockHolder::Release() {
  if (child_ <= 0) return;
  close(command_fd_);
  int status = 0;
  waitpid(child_, &status, 0);
  child_ = -1;
  locked_ = false;
}

}  // namespace loopwatch::testing
