// Creation and teardown of the shim's ring files (see ring_file.h).
#include "ring_file.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "clock.h"
#include "loopwatch/header_writer.h"

namespace loopwatch::shim {
namespace {

std::string Errno(const char* what, const std::string& path, int err) {
  return std::string(what) + " " + path + ": " + std::strerror(err);
}

// Ring files are private to their owner (0600) unless LOOPWATCH_RING_MODE=0660 shares them with the
// file's group, for an agent running as another user in that group (it needs write access too: it
// publishes read_pos). Returns 0 for any other value.
mode_t RingFileMode() {
  const char* text = std::getenv("LOOPWATCH_RING_MODE");
  if (text == nullptr || *text == '\0' || std::strcmp(text, "0600") == 0) return 0600;
  return std::strcmp(text, "0660") == 0 ? 0660 : 0;
}

}  // namespace

uint64_t ProcessStartTicks() {
  std::ifstream in("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name (field 2) may hold spaces and parentheses: fields count from the last ')'.
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
    if (i == 22) return std::strtoull(field.c_str(), nullptr, 10);
  }
  return 0;
}

std::string RingFileName(int pid, uint64_t process_start_ticks, uint32_t loop_id) {
  char name[96];
  std::snprintf(name, sizeof(name), "lw-%d-%llu-%u.ring", pid, static_cast<unsigned long long>(process_start_ticks),
                loop_id);
  return name;
}

RingFile* RingFile::Create(const RingIdentity& id, std::string* error) {
  using namespace protocol;
  const RingGeometry& g = id.geometry;
  const int pid = getpid();
  const uint64_t start_ticks = ProcessStartTicks();
  const std::string final_path = id.dir + "/" + RingFileName(pid, start_ticks, id.loop_id);
  // Built under a dot-name the agent ignores, then renamed: the agent never sees a half-made file.
  const std::string tmp_path = id.dir + "/." + RingFileName(pid, start_ticks, id.loop_id) + ".tmp";

  const mode_t mode = RingFileMode();
  if (mode == 0) {
    *error = std::string("LOOPWATCH_RING_MODE must be 0600 or 0660, got '") + std::getenv("LOOPWATCH_RING_MODE") + "'";
    return nullptr;
  }
  // A directory the shim creates is shared the same way as its files (0700 or 0770, whatever the
  // umask); an existing one is left as its owner made it.
  const mode_t dir_mode = mode == 0660 ? 0770 : 0700;
  if (mkdir(id.dir.c_str(), dir_mode) == 0) {
    chmod(id.dir.c_str(), dir_mode);
  } else if (errno != EEXIST) {
    *error = Errno("cannot create ring directory", id.dir, errno);
    return nullptr;
  }
  const int fd = open(tmp_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    *error = Errno("cannot create ring file", tmp_path, errno);
    return nullptr;
  }
  // Names the final path: the temporary one is gone by the time anyone reads the message.
  auto fail = [&](const char* what, int err) -> RingFile* {
    *error = Errno(what, final_path, err);
    close(fd);
    unlink(tmp_path.c_str());
    return nullptr;
  };
  // Exactly `mode`, whatever the umask (created 0600 above, so never wider in between).
  if (mode != 0600 && fchmod(fd, mode) != 0) return fail("cannot set the mode of ring file", errno);
  const uint64_t size = g.file_size();
  if (const int err = posix_fallocate(fd, 0, static_cast<off_t>(size)); err != 0) return fail("cannot size ring file", err);
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;  // l_start = l_len = 0: the whole file
  if (fcntl(fd, F_OFD_SETLK, &lock) != 0) return fail("cannot lock ring file", errno);
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return fail("cannot map ring file", errno);

  const TickCalibration& clock = TickClock::Calibration();  // the first ring finishes the calibration
  RingHeader* h = WriteRingHeader(base, g,
                                  {.pid = pid,
                                   .loop_id = id.loop_id,
                                   .process_start_ticks = start_ticks,
                                   .loop_thread_id = static_cast<int32_t>(syscall(SYS_gettid)),
                                   .loop_kind = id.loop_kind,
                                   .clock_kind = clock.kind,
                                   .clock_tick_base = clock.tick_base,
                                   .clock_mono_base_ns = clock.mono_base_ns,
                                   .clock_ns_per_tick = clock.ns_per_tick,
                                   .created_unix_ns = UnixNowNs(),
                                   .heartbeat_ns = MonotonicNs(),
                                   .service = id.service});

  if (rename(tmp_path.c_str(), final_path.c_str()) != 0) {
    const int err = errno;
    munmap(base, size);
    return fail("cannot publish ring file", err);
  }
  auto* ring = new RingFile;
  ring->path_ = final_path;
  ring->fd_ = fd;
  ring->base_ = base;
  ring->size_ = size;
  ring->header_ = h;
  auto* bytes = static_cast<unsigned char*>(base);
  ring->writer_ = RingWriter(h, reinterpret_cast<Sample*>(bytes + g.ring_offset()), g.ring_capacity);
  ring->names_ = NameTableWriter(h, bytes + g.names_offset(), g.names_capacity);
  return ring;
}

void RingFile::Close() {
  if (header_ != nullptr) {
    // Pairs with the agent's release store of control when it attaches. No agent ever attached:
    // nobody will drain or remove this file, so the writer removes it (no litter in /dev/shm).
    const bool agent_attached = (header_->control.load(std::memory_order_acquire) & protocol::kControlValid) != 0;
    header_->writer_flags.fetch_or(protocol::kWriterClosed, std::memory_order_release);
    if (!agent_attached) unlink(path_.c_str());
    munmap(base_, size_);
  }
  if (fd_ >= 0) close(fd_);  // releases the lock: the agent sees the writer gone
  header_ = nullptr;
  base_ = nullptr;
  fd_ = -1;
}

void RingFile::AbandonAfterFork() {
  if (base_ != nullptr) munmap(base_, size_);
  if (fd_ >= 0) close(fd_);
  header_ = nullptr;
  base_ = nullptr;
  fd_ = -1;
}

RingFile::~RingFile() { Close(); }

}  // namespace loopwatch::shim
