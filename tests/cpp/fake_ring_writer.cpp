// A stand-in for the shim, for manual and end-to-end checks of the agent without Python: creates a
// ring file in DIR the way the shim does (tests/cpp/test_ring.h), holds its writer lock, and writes
// named samples with spread-out durations for a while, then exits (the agent then retires the ring).
//
//   fake_ring_writer DIR [SECONDS=10] [SAMPLES_PER_SECOND=10000] [SERVICE=fake]
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "test_ring.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR [SECONDS=10] [SAMPLES_PER_SECOND=10000] [SERVICE=fake]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const double seconds = argc > 2 ? std::atof(argv[2]) : 10;
  const long rate = argc > 3 ? std::atol(argv[3]) : 10000;
  loopwatch::testing::TestRingOptions options;
  options.geometry = loopwatch::protocol::kDefaultGeometry;
  options.service = argc > 4 ? argv[4] : "fake";
  options.pid = getpid();
  options.thread_id = getpid();
  const std::string path = dir + "/lw-" + std::to_string(getpid()) + "-0-1.ring";
  loopwatch::testing::TestRing ring(path, options);
  const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  if (fd < 0 || fcntl(fd, F_SETLK, &lock) != 0) {
    std::perror("lock");
    return 1;
  }
  const uint32_t names[] = {ring.names().Append("app.handlers.get_user"), ring.names().Append("Task.step main.py:42"),
                            ring.names().Append("Protocol.data_received"), ring.names().Append("slow.blocking_call")};
  std::printf("%s\n", path.c_str());
  std::fflush(stdout);

  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  uint64_t n = 0;
  while (std::chrono::steady_clock::now() < end) {
    for (long i = 0; i < rate / 100; ++i, ++n) {
      const uint32_t which = static_cast<uint32_t>(n % 100);
      const uint32_t name = which == 99 ? names[3] : names[which % 3];
      const uint64_t duration_ns = which == 99 ? 150'000'000 : 2'000 + (n * 7919) % 400'000;
      ring.Push(duration_ns, name, which % 4 == 0 ? loopwatch::protocol::kLagUnknown : (n * 31) % 50'000, which % 40);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::printf("wrote %llu samples, dropped %llu\n", static_cast<unsigned long long>(n),
              static_cast<unsigned long long>(ring.header()->dropped.load()));
  return 0;
}
