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
#include <memory>
#include <string>
#include <vector>

#include "loopwatch/layout.h"
#include "ring_file.h"
#include "tick_clock.h"
#include "loopwatch/name_table.h"
#include "loopwatch/ring.h"

namespace {

using namespace loopwatch::protocol;
using loopwatch::shim::RingFile;
using loopwatch::shim::RingIdentity;
using loopwatch::shim::MonotonicNs;
using loopwatch::shim::TickClock;

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }


struct Ring {
  std::unique_ptr<RingFile> file;
  uint64_t next_start = 0;
  uint64_t cursor = 0;  // own walk through the sample table, so every ring sees every name
};

// Created by the shim's own RingFile (the very code a Python process uses); exits on failure.
Ring CreateRing(const std::string& dir, const std::string& service, uint32_t loop_id) {
  std::string error;
  RingIdentity identity{dir, service, loop_id, loop_id % 2 ? LoopKind::kUvloop : LoopKind::kAsyncio, kDefaultGeometry};
  Ring ring;
  ring.file.reset(RingFile::Create(identity, &error));
  if (ring.file == nullptr) {
    std::fprintf(stderr, "%s\n", error.c_str());
    std::exit(1);
  }
  ring.next_start = MonotonicNs();
  ring.cursor = uint64_t(loop_id) * 997;
  return ring;
}

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

  TickClock::Init(/*force_monotonic=*/true, "");  // samples below are CLOCK_MONOTONIC ns
  std::vector<Ring> rings;
  for (uint32_t loop = 1; loop <= ring_count; ++loop) {
    rings.push_back(CreateRing(dir, service, loop));
    for (uint32_t i = 0; i < names; ++i) {
      rings.back().file->names().Append("bench.loop" + std::to_string(loop) + ".handler_" + std::to_string(i) +
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
      attached = attached && (ring.file->header()->control.load(std::memory_order_acquire) & kControlValid) != 0;
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
    const bool ok = ring.file->writer().TryPush(s);
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
  for (Ring& ring : rings) dropped += ring.file->header()->dropped.load(std::memory_order_relaxed);
  const double elapsed = double(now - t0) * 1e-9;
  std::printf(
      "{\"pid\": %d, \"rings\": %u, \"seconds\": %.4f, \"attempted\": %llu, \"written\": %llu, \"dropped\": %llu, "
      "\"rate\": %.1f}\n",
      getpid(), ring_count, elapsed, (unsigned long long)attempted, (unsigned long long)written,
      (unsigned long long)dropped, double(attempted) / elapsed);
  std::fflush(stdout);
  const timespec tick{0, 20'000'000};
  while (!g_stop) nanosleep(&tick, nullptr);  // a finished timed run keeps its rings live until told to go
  for (Ring& ring : rings) ring.file->Close();  // marks the ring closed and drops the lock
  return 0;
}
