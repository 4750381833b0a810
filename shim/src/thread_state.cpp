// Reads /proc/self/task/<tid>/{stat,wchan} (see thread_state.h).
#include "thread_state.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>

namespace loopwatch::shim {
namespace {

// The whole (small) file, or "" if it cannot be read. Plain syscalls: no buffering, no locale.
std::string ReadSmallFile(const char* path) {
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string text;
  char buffer[1024];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n <= 0 || text.size() > 16384) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  close(fd);
  return text;
}

void SleepNs(uint64_t ns) {
  timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

}  // namespace

std::string StateFromStatLine(const std::string& stat) {
  const auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size() || stat[close + 1] != ' ') return {};
  const char state = stat[close + 2];
  if (state < 'A' || state > 'z') return {};
  return std::string(1, state);
}

ThreadState ReadThreadState(int tid, int reads, uint64_t interval_ns, const std::atomic<bool>* stop) {
  char stat_path[64];
  char wchan_path[64];
  std::snprintf(stat_path, sizeof(stat_path), "/proc/self/task/%d/stat", tid);
  std::snprintf(wchan_path, sizeof(wchan_path), "/proc/self/task/%d/wchan", tid);
  ThreadState result;
  for (int i = 0; i < reads; ++i) {
    if (i > 0) {
      if (stop != nullptr && stop->load(std::memory_order_relaxed)) break;
      SleepNs(interval_ns);
    }
    const std::string state = StateFromStatLine(ReadSmallFile(stat_path));
    if (state.empty()) break;  // the thread is gone
    result.state = state;
    if (state == "R") break;  // running wins: no need to look again
  }
  for (const char c : ReadSmallFile(wchan_path)) {
    if (c >= 0x20 && c < 0x7f && result.wchan.size() < 128) result.wchan.push_back(c);
  }
  return result;
}

}  // namespace loopwatch::shim
