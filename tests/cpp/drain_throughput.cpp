// Not a test: measures the agent's drain cost in samples per agent CPU-second (target >= 20 M).
// Fills a default-size ring with varied samples (50 names, TSC-like calibration), lets the Agent
// drain it, and times only the drains with CLOCK_PROCESS_CPUTIME_ID.
//
//   build/tests/cpp/drain_throughput [ROUNDS=200]
#include <ctime>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <spdlog/spdlog.h>

#include "agent.h"
#include "test_ring.h"

namespace {

double CpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace loopwatch;
  spdlog::set_level(spdlog::level::warn);
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 200;
  testing::TempDir dir;
  testing::TestRingOptions options;
  options.geometry = protocol::kDefaultGeometry;
  options.clock = protocol::ClockKind::kTsc;
  options.ns_per_tick = 0.3448;
  testing::TestRing ring(dir.File("lw-1-1-1.ring"), options);
  uint32_t names[50];
  for (int i = 0; i < 50; ++i) names[i] = ring.names().Append("module.callback_" + std::to_string(i));
  agent::Agent agent({dir.path(), {.top_k = 20, .slow_threshold_seconds = 0.1}});
  agent.Scan();

  uint64_t drained = 0, x = 12345;
  double cpu = 0;
  for (int round = 0; round < rounds; ++round) {
    for (uint32_t i = 0; i < options.geometry.ring_capacity; ++i) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;  // LCG: varied durations, names, lags
      const uint64_t lag = (x >> 33) % 7 == 0 ? protocol::kLagUnknown : (x >> 44) % 100000;
      ring.Push((x >> 40) % 3000000, names[(x >> 20) % 50], lag, static_cast<uint32_t>((x >> 30) % 200));
    }
    const double start = CpuSeconds();
    drained += agent.Drain();
    cpu += CpuSeconds() - start;
  }
  std::printf("%llu samples drained in %.3f CPU-s: %.1f M samples per agent CPU-second\n",
              static_cast<unsigned long long>(drained), cpu, static_cast<double>(drained) / cpu / 1e6);
  return 0;
}
