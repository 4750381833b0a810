// Synthetic ring writer for bench/agent_throughput.py: stands in for many instrumented loops without
// Python, so the benchmark measures the agent and nothing else. One process writes RINGS rings (loop
// ids 1..RINGS, the real pid, so the agent sees RINGS distinct (service, pid, loop) keys). Each file
// is made exactly like the shim makes it (shim/src/ring_file.cpp): dot-name tmp file, posix_fallocate,
// F_SETLK write lock held for life, header filled, magic stored last (release), rename into place.
// Each ring gets NAMES distinct callback names; samples cycle through a precomputed table with
// Zipf-weighted names and log-uniform durations and lags, so every bucket and top-K path is exercised.
//
//   synthetic_writer DIR RINGS RATE SECONDS [NAMES=32] [SERVICE=bench]
//     RATE     samples per second over all rings, paced in batches against CLOCK_MONOTONIC;
//              0 = full speed (push until each ring is full, nap 50 us only when all of them are)
//     SECONDS  how long to write; 0 = until SIGTERM
//
// Prints "ready" once every ring is published, starts writing once the agent has attached all of
// them (RingHeader::control has kControlValid), and prints one JSON line of totals when writing
// ends. After a finished SECONDS run it keeps holding its locks (rings stay live) until SIGTERM;
// then it marks the rings closed, as the shim does, and exits 0.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "loopwatch/layout.h"
#include "loopwatch/name_table.h"
#include "loopwatch/ring.h"

namespace {

using namespace loopwatch::protocol;

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

uint64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000 + uint64_t(ts.tv_nsec);
}

uint64_t ProcessStartTicks() {  // field 22 of /proc/self/stat; fields count from the last ')'
  std::ifstream in("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
    if (i == 22) return std::strtoull(field.c_str(), nullptr, 10);
  }
  return 0;
}

struct Ring {
  int fd = -1;
  RingHeader* header = nullptr;
  RingWriter writer;
  uint64_t next_start = 0;
  uint64_t cursor = 0;  // own walk through the sample table, so every ring sees every name
};

// Mirrors shim/src/ring_file.cpp RingFile::Create step by step; exits the process on any failure.
Ring CreateRing(const std::string& dir, const std::string& service, uint32_t loop_id, uint64_t start_ticks) {
  const RingGeometry g = kDefaultGeometry;
  const std::string name =
      "lw-" + std::to_string(getpid()) + "-" + std::to_string(start_ticks) + "-" + std::to_string(loop_id) + ".ring";
  const std::string tmp_path = dir + "/." + name + ".tmp", final_path = dir + "/" + name;
  Ring ring;
  ring.fd = open(tmp_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  void* base = MAP_FAILED;
  if (ring.fd < 0 || posix_fallocate(ring.fd, 0, off_t(g.file_size())) != 0 || fcntl(ring.fd, F_SETLK, &lock) != 0 ||
      (base = mmap(nullptr, g.file_size(), PROT_READ | PROT_WRITE, MAP_SHARED, ring.fd, 0)) == MAP_FAILED) {
    std::perror(tmp_path.c_str());
    std::exit(1);
  }
  auto* h = new (base) RingHeader;  // zero-filled file: placement-new only starts the lifetimes
  h->version_major = kVersionMajor;
  h->version_minor = kVersionMinor;
  h->header_size = sizeof(RingHeader);
  h->file_size = g.file_size();
  h->names_offset = g.names_offset();
  h->report_offset = g.report_offset();
  h->ring_offset = g.ring_offset();
  h->names_capacity = g.names_capacity;
  h->report_capacity = g.report_capacity;
  h->ring_capacity = g.ring_capacity;
  h->sample_size = sizeof(Sample);
  h->pid = getpid();
  h->loop_id = loop_id;
  h->process_start_ticks = start_ticks;
  h->loop_thread_id = int32_t(syscall(SYS_gettid));
  h->loop_kind = uint32_t(loop_id % 2 ? LoopKind::kUvloop : LoopKind::kAsyncio);
  h->clock_kind = uint32_t(ClockKind::kMonotonicNs);
  h->created_unix_ns = uint64_t(std::time(nullptr)) * 1'000'000'000;
  h->clock_mono_base_ns = 0;
  h->clock_ns_per_tick = 1.0;
  std::strncpy(h->service, service.c_str(), kServiceNameSize - 1);
  h->heartbeat_ns.store(MonotonicNs(), std::memory_order_relaxed);
  // Pairs with the agent's acquire load of magic in CheckHeader: every field above is visible first.
  h->magic.store(kMagic, std::memory_order_release);
  if (rename(tmp_path.c_str(), final_path.c_str()) != 0) {
    std::perror(final_path.c_str());
    std::exit(1);
  }
  auto* bytes = static_cast<unsigned char*>(base);
  ring.header = h;
  ring.writer = RingWriter(h, reinterpret_cast<Sample*>(bytes + g.ring_offset()), g.ring_capacity);
  ring.next_start = MonotonicNs();
  ring.cursor = uint64_t(loop_id) * 997;
  return ring;
}

// 4096 varied samples (name_id filled per ring: ids are kFirstNameId.. in every ring).
std::vector<Sample> SampleTable(uint32_t names) {
  std::vector<double> cdf(names);
  double total = 0;
  for (uint32_t i = 0; i < names; ++i) cdf[i] = total += 1.0 / (i + 1);  // Zipf: a few hot callbacks
  uint64_t x = 88172645463325252ULL;
  auto uniform = [&x] {  // xorshift64: deterministic, fast
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return double(x >> 11) * 0x1.0p-53;
  };
  auto log_uniform = [&](double lo, double hi) {
    return uint64_t(std::exp(std::log(lo) + uniform() * std::log(hi / lo)));
  };
  std::vector<Sample> table(4096);
  for (Sample& s : table) {
    const double pick = uniform() * total;
    uint32_t name = 0;
    while (name + 1 < names && cdf[name] < pick) ++name;
    const bool slow = uniform() < 0.001;
    s.duration_ticks = slow ? log_uniform(100e6, 300e6) : log_uniform(1e3, 5e6);  // 1 us..5 ms, 0.1 % slow
    s.lag_ticks = uniform() < 0.25 ? kLagUnknown : log_uniform(100, 2e6);
    s.name_id = kFirstNameId + name;
    const auto kind = uniform() < 0.6 ? SampleKind::kReady : uniform() < 0.5 ? SampleKind::kTimer : SampleKind::kIo;
    s.handles_kind = Sample::PackHandlesKind(uint32_t(uniform() * 256), kind);
  }
  return table;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s DIR RINGS RATE SECONDS [NAMES=32] [SERVICE=bench]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const uint32_t ring_count = uint32_t(std::atoi(argv[2]));
  const double rate = std::atof(argv[3]), seconds = std::atof(argv[4]);
  const uint32_t names = argc > 5 ? uint32_t(std::atoi(argv[5])) : 32;
  const std::string service = argc > 6 ? argv[6] : "bench";
  if (ring_count == 0 || names == 0) return 2;
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);

  const uint64_t start_ticks = ProcessStartTicks();
  std::vector<Ring> rings;
  for (uint32_t loop = 1; loop <= ring_count; ++loop) {
    rings.push_back(CreateRing(dir, service, loop, start_ticks));
    NameTableWriter table(rings.back().header,
                          reinterpret_cast<unsigned char*>(rings.back().header) + kDefaultGeometry.names_offset(),
                          kDefaultGeometry.names_capacity);
    for (uint32_t i = 0; i < names; ++i) {
      table.Append("bench.loop" + std::to_string(loop) + ".handler_" + std::to_string(i) +
                   " app/routes.py:" + std::to_string(100 + i));
    }
  }
  const std::vector<Sample> table = SampleTable(names);
  std::printf("ready\n");
  std::fflush(stdout);
  // The clock starts once the agent has attached every ring (its next directory scan): samples written
  // before that could only pile up, and the benchmark is about the agent's steady state.
  for (int waited_ms = 0; !g_stop; ++waited_ms) {
    bool attached = true;
    for (Ring& ring : rings) {
      // Pairs with the agent's release store of control when it maps the ring.
      attached = attached && (ring.header->control.load(std::memory_order_acquire) & kControlValid) != 0;
    }
    if (attached) break;
    if (waited_ms > 30'000) {
      std::fprintf(stderr, "synthetic_writer: no agent attached the rings within 30 s\n");
      return 1;
    }
    const timespec ms{0, 1'000'000};
    nanosleep(&ms, nullptr);
  }

  uint64_t attempted = 0, written = 0;
  std::size_t next_ring = 0;
  auto push = [&](Ring& ring) {
    Sample s = table[ring.cursor++ & (table.size() - 1)];
    s.start_ticks = ring.next_start;
    ring.next_start += s.duration_ticks + 200;
    ++attempted;
    const bool ok = ring.writer.TryPush(s);
    written += ok;
    return ok;
  };
  const uint64_t t0 = MonotonicNs(), end = seconds > 0 ? t0 + uint64_t(seconds * 1e9) : UINT64_MAX;
  uint64_t now = t0;
  while (!g_stop && (now = MonotonicNs()) < end) {
    if (rate > 0) {  // paced: catch up with rate * elapsed, round-robin, then nap ~100 us
      const auto due = uint64_t(double(now - t0) * rate * 1e-9);
      while (attempted < due) push(rings[next_ring++ % rings.size()]);
      const timespec nap{0, 100'000};
      nanosleep(&nap, nullptr);
    } else {  // full speed: fill every ring; nap only when all of them are full
      bool any = false;
      for (Ring& ring : rings) {
        for (int i = 0; i < 256 && push(ring); ++i) any = true;
      }
      if (!any) {
        const timespec nap{0, 50'000};
        nanosleep(&nap, nullptr);
      }
    }
  }
  uint64_t dropped = 0;
  for (Ring& ring : rings) dropped += ring.header->dropped.load(std::memory_order_relaxed);
  const double elapsed = double(now - t0) * 1e-9;
  std::printf(
      "{\"pid\": %d, \"rings\": %u, \"seconds\": %.4f, \"attempted\": %llu, \"written\": %llu, \"dropped\": %llu, "
      "\"rate\": %.1f}\n",
      getpid(), ring_count, elapsed, (unsigned long long)attempted, (unsigned long long)written,
      (unsigned long long)dropped, double(attempted) / elapsed);
  std::fflush(stdout);
  const timespec tick{0, 20'000'000};
  while (!g_stop) nanosleep(&tick, nullptr);  // a finished timed run keeps its rings live until told to go
  for (Ring& ring : rings) {
    // Pairs with the agent's acquire load of writer_flags: the ring gets no more samples.
    ring.header->writer_flags.fetch_or(kWriterClosed, std::memory_order_release);
    close(ring.fd);  // drops the lock
  }
  return 0;
}
