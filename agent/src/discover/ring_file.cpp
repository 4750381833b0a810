// Opening, validating, mapping and unmapping a ring file; see ring_file.h.
#include "discover/ring_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace loopwatch::agent {

using protocol::HeaderError;

RingOpenResult RingFile::Open(const std::string& path, const OwnerPolicy& owners) {
  RingOpenResult result;
  // O_NONBLOCK: never hang on a FIFO someone named *.ring; fstat refuses it right after.
  const int fd = open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    result.error_number = errno;
    if (errno == ENOENT) {
      result.vanished = true;
    } else if (errno == ELOOP) {
      result.reason = "not_regular_file";  // a symlink
    } else {
      result.reason = "open_failed";
    }
    return result;
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    result.error_number = errno;
    result.reason = "open_failed";
    close(fd);
    return result;
  }
  result.have_identity = true;
  result.identity = FileIdentity::FromStat(st);
  if (!S_ISREG(st.st_mode)) {
    result.reason = "not_regular_file";
    close(fd);
    return result;
  }
  if (!owners.Allows(st.st_uid)) {
    result.reason = "owner_not_allowed";
    close(fd);
    return result;
  }
  const auto length = static_cast<uint64_t>(st.st_size);
  if (length < sizeof(protocol::RingHeader)) {  // nothing to map; CheckHeader would say the same
    result.header_error = HeaderError::kTooSmall;
    result.reason = protocol::HeaderErrorName(result.header_error);
    close(fd);
    return result;
  }
  // Guarded before the header is read: the file may shrink between fstat and CheckHeader.
  GuardedMapping::Error map_error = GuardedMapping::Error::kNone;
  std::unique_ptr<GuardedMapping> mapping = GuardedMapping::Map(fd, length, &map_error, &result.error_number);
  if (!mapping) {
    result.reason = map_error == GuardedMapping::Error::kNoGuardSlot ? "too_many_rings" : "map_failed";
    close(fd);
    return result;
  }
  const protocol::HeaderCheck check = protocol::CheckHeader(mapping->data(), length);
  if (!check.ok() || mapping->faulted()) {
    result.header_error = check.ok() ? HeaderError::kFileSizeMismatch : check.error;
    result.reason = check.ok() ? "truncated" : protocol::HeaderErrorName(check.error);
    close(fd);
    return result;
  }
  result.ring.reset(new RingFile(path, fd, std::move(mapping), result.identity, check.header));
  return result;
}

RingFile::RingFile(std::string path, int fd, std::unique_ptr<GuardedMapping> mapping, const FileIdentity& identity,
                   const protocol::HeaderSnapshot& header)
    : path_(std::move(path)), fd_(fd), mapping_(std::move(mapping)), identity_(identity), header_(header) {
  auto* bytes = static_cast<unsigned char*>(mapping_->data());
  auto* live = static_cast<protocol::RingHeader*>(mapping_->data());
  // CheckHeader proved both sections lie inside the mapping.
  reader_ = protocol::RingReader(live, reinterpret_cast<const protocol::Sample*>(bytes + header_.ring_offset),
                                 header_.ring_capacity);
  names_ = protocol::NameTableReader(live, bytes + header_.names_offset, header_.names_capacity);
  released_pos_ = reader_.read_pos();
}

void RingFile::ReleaseDrainedPages() {
  // The kernel maps a whole aligned fault-around window (fault_around_bytes, 64 KiB) on a read fault,
  // so pages just behind read_pos come back whenever the page at read_pos is touched. Only whole
  // windows that are fully drained are released; the window holding read_pos never is.
  constexpr uintptr_t kWindow = 64u << 10;
  constexpr uint64_t kMinRelease = 2 * kWindow / sizeof(protocol::Sample);
  const uint64_t read_pos = reader_.read_pos();
  if (read_pos - released_pos_ < kMinRelease) return;
  const uint64_t capacity = header_.ring_capacity;
  const uint64_t from = read_pos - released_pos_ > capacity ? read_pos - capacity : released_pos_;
  auto* ring = static_cast<unsigned char*>(mapping_->data()) + header_.ring_offset;
  auto address = [ring, capacity](uint64_t pos) {
    return reinterpret_cast<uintptr_t>(ring + (pos & (capacity - 1)) * sizeof(protocol::Sample));
  };
  // Whole windows inside records [first, last) of the ring (CheckHeader: they lie inside the mapping).
  auto release = [ring](uint64_t first, uint64_t last) {
    const uintptr_t begin = (reinterpret_cast<uintptr_t>(ring + first * sizeof(protocol::Sample)) + kWindow - 1) & ~(kWindow - 1);
    const uintptr_t end = reinterpret_cast<uintptr_t>(ring + last * sizeof(protocol::Sample)) & ~(kWindow - 1);
    if (begin < end) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
  };
  const uint64_t start = from & (capacity - 1);
  const uint64_t count = read_pos - from;
  if (start + count <= capacity) {
    release(start, start + count);
  } else {
    release(start, capacity);
    release(0, start + count - capacity);
  }
  // Next time, start at the window holding read_pos (partly drained, so not released yet).
  released_pos_ = read_pos - (address(read_pos) & (kWindow - 1)) / sizeof(protocol::Sample);
}

RingFile::~RingFile() { close(fd_); }  // mapping_ unmaps itself

bool RingFile::Truncated() const {
  if (Faulted()) return true;
  struct stat st {};
  return fstat(fd_, &st) == 0 && static_cast<uint64_t>(st.st_size) < mapping_->length();
}

uint64_t RingFile::Backlog() const {
  // Pairs with the writer's release store of write_pos (only a statistic here).
  const uint64_t write_pos = live_header().write_pos.load(std::memory_order_acquire);
  const uint64_t read_pos = reader_.read_pos();
  return write_pos >= read_pos ? write_pos - read_pos : 0;
}

bool RingFile::UnlinkIfUnchanged() const {
  struct stat st {};
  if (lstat(path_.c_str(), &st) != 0) return false;
  if (!FileIdentity::FromStat(st).SameInode(identity_)) return false;
  return unlink(path_.c_str()) == 0;
}

}  // namespace loopwatch::agent
