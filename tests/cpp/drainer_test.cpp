// Tests of the drain cycle (agent/src/drainer.h, tracked_ring.h) on real ring files through the
// Agent: known samples become the right series values, the read position is published, drops are
// mirrored, and a ring that breaks the protocol is retired with its reason.
#include "drain/drainer.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "agent.h"
#include "metric_reader.h"
#include "test_ring.h"

namespace loopwatch::agent {
namespace {

using testing::LabelSubset;
using testing::LockHolder;
using testing::MetricReader;
using testing::TempDir;
using testing::TestRing;
using testing::TestRingOptions;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kMs = 1'000'000;  // ticks at 1 ns per tick
const LabelSubset kLoop = {{"service", "checkout"}, {"pid", "4242"}, {"loop", "1"}};

class DrainerTest : public ::testing::Test {
 protected:
  // A live ring (a child process holds its lock), mapped by one scan.
  void MapLiveRing(const TestRingOptions& options = {}) {
    ring_ = std::make_unique<TestRing>(dir_.File("lw-4242-1-1.ring"), options);
    holder_ = std::make_unique<LockHolder>(ring_->path());
    ASSERT_TRUE(holder_->locked());
    agent_.Scan(t0_);
    ASSERT_EQ(agent_.rings().size(), 1u);
  }
  MetricReader Read() { return MetricReader(*agent_.registry()); }

  TempDir dir_;
  Agent agent_{{dir_.path(), {.top_k = 5, .slow_threshold_seconds = 0.1}}};
  Clock::time_point t0_ = Clock::now();
  std::unique_ptr<TestRing> ring_;
  std::unique_ptr<LockHolder> holder_;
};

TEST_F(DrainerTest, TurnsKnownSamplesIntoHistogramCounts) {
  MapLiveRing();
  const uint32_t fast = ring_->names().Append("api.fast");
  const uint32_t slow = ring_->names().Append("api.slow");
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(ring_->Push(kMs / 2, fast));  // 0.5 ms
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(ring_->Push(300 * kMs, slow));  // 300 ms, slow
  ASSERT_TRUE(ring_->Push(2 * kMs));                                     // unnamed: "other"

  EXPECT_EQ(agent_.Drain(t0_), 104u);

  const MetricReader read = Read();
  EXPECT_EQ(read.Value("loopwatch_callbacks_total", kLoop), 104.0);
  EXPECT_EQ(read.Value("loopwatch_slow_callbacks_total", kLoop), 3.0);
  EXPECT_EQ(read.Value("loopwatch_agent_samples_drained_total"), 104.0);
  const auto duration = read.Histogram("loopwatch_callback_duration_seconds", kLoop);
  ASSERT_TRUE(duration);
  EXPECT_EQ(MetricReader::CumulativeAt(*duration, 5e-4), 100u);
  EXPECT_EQ(MetricReader::CumulativeAt(*duration, 2.5e-3), 101u);
  EXPECT_EQ(MetricReader::CumulativeAt(*duration, 0.25), 101u);
  EXPECT_EQ(MetricReader::CumulativeAt(*duration, 0.5), 104u);
  EXPECT_NEAR(duration->sample_sum, 100 * 0.0005 + 3 * 0.3 + 0.002, 1e-9);

  LabelSubset named = kLoop;
  named["callback"] = "api.slow";
  ASSERT_TRUE(read.Histogram("loopwatch_named_callback_duration_seconds", named));
  EXPECT_EQ(read.Histogram("loopwatch_named_callback_duration_seconds", named)->sample_count, 3u);
  named["callback"] = "api.fast";
  EXPECT_EQ(read.Histogram("loopwatch_named_callback_duration_seconds", named)->sample_count, 100u);
  named["callback"] = "other";
  EXPECT_EQ(read.Histogram("loopwatch_named_callback_duration_seconds", named)->sample_count, 1u);

  const auto info = read.Find("loopwatch_loop_info", kLoop);
  ASSERT_EQ(info.size(), 1u);
  EXPECT_EQ(MetricReader::LabelOf(info[0], "kind"), "uvloop");
  EXPECT_EQ(MetricReader::LabelOf(info[0], "thread"), "4243");
  // The reader published its position: the writer may reuse every slot.
  EXPECT_EQ(ring_->header()->read_pos.load(), 104u);
  const auto drain_cycles = read.Histogram("loopwatch_agent_drain_duration_seconds");
  ASSERT_TRUE(drain_cycles);
  EXPECT_EQ(drain_cycles->sample_count, 1u);
}

TEST_F(DrainerTest, DrainsMoreThanOneBatchPerCycle) {
  TestRingOptions options;
  options.geometry.ring_capacity = 1u << 15;  // 32768 > 4 batches of 8192
  MapLiveRing(options);
  for (uint32_t i = 0; i < options.geometry.ring_capacity; ++i) ASSERT_TRUE(ring_->Push(1000));
  EXPECT_EQ(agent_.Drain(t0_), options.geometry.ring_capacity);
  EXPECT_EQ(Read().Value("loopwatch_callbacks_total", kLoop), static_cast<double>(options.geometry.ring_capacity));
}

TEST_F(DrainerTest, MirrorsTheWritersDropCounter) {
  MapLiveRing();
  const uint32_t capacity = TestRingOptions{}.geometry.ring_capacity;
  for (uint32_t i = 0; i < capacity; ++i) ASSERT_TRUE(ring_->Push(1000));
  for (int i = 0; i < 25; ++i) ASSERT_FALSE(ring_->Push(1000));
  agent_.Drain(t0_);
  EXPECT_EQ(Read().Value("loopwatch_dropped_samples_total", kLoop), 25.0);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(ring_->Push(1000));
  agent_.Drain(t0_);
  EXPECT_EQ(Read().Value("loopwatch_dropped_samples_total", kLoop), 25.0);
  EXPECT_EQ(Read().Value("loopwatch_callbacks_total", kLoop), static_cast<double>(capacity + 5));
}

TEST_F(DrainerTest, RetiresCorruptRingButKeepsFileOfLiveWriter) {
  MapLiveRing();
  ASSERT_TRUE(ring_->Push(1000));
  agent_.Drain(t0_);
  ASSERT_EQ(Read().Count("loopwatch_callbacks_total", kLoop), 1u);
  ring_->header()->write_pos.store(1'000'000);  // runs ahead by more than the capacity

  agent_.Drain(t0_);

  const MetricReader read = Read();
  EXPECT_EQ(read.Count("loopwatch_callbacks_total", kLoop), 0u);  // series removed
  EXPECT_EQ(read.Value("loopwatch_agent_rings_refused_total", {{"reason", "corrupt_ring"}}), 1.0);
  EXPECT_EQ(read.Value("loopwatch_agent_rings"), 0.0);
  EXPECT_EQ(read.Value("loopwatch_agent_rings_retired_total"), 0.0);
  EXPECT_TRUE(std::filesystem::exists(ring_->path()));
  // Later scans neither map it again nor count it again.
  agent_.Scan(t0_ + std::chrono::seconds(1));
  agent_.Scan(t0_ + std::chrono::seconds(2));
  EXPECT_EQ(agent_.rings().size(), 0u);
  EXPECT_EQ(Read().Value("loopwatch_agent_rings_refused_total", {{"reason", "corrupt_ring"}}), 1.0);
}

TEST_F(DrainerTest, RetiresRingWithCorruptNameTable) {
  MapLiveRing();
  ring_->names().Append("fine");
  ring_->header()->names_end.store(1u << 30);  // beyond the table
  agent_.Drain(t0_);
  EXPECT_EQ(agent_.rings().size(), 0u);
  EXPECT_EQ(Read().Value("loopwatch_agent_rings_refused_total", {{"reason", "corrupt_names"}}), 1.0);
  EXPECT_TRUE(std::filesystem::exists(ring_->path()));
}

TEST_F(DrainerTest, RemovesCorruptRingFileWhenItsWriterIsGone) {
  MapLiveRing();
  holder_->Release();
  ring_->header()->write_pos.store(1'000'000);
  agent_.Drain(t0_);
  EXPECT_EQ(agent_.rings().size(), 0u);
  EXPECT_FALSE(std::filesystem::exists(ring_->path()));
}

TEST_F(DrainerTest, TellsTheShimAnAgentIsAttached) {
  MapLiveRing();
  EXPECT_NE(ring_->header()->control.load() & protocol::kControlValid, 0u);
}

}  // namespace
}  // namespace loopwatch::agent

namespace loopwatch::agent {
namespace {

// Resident kB of each mapping of `path` in this process (/proc/self/smaps "Rss:"). The test maps the
// file twice: as the writer (TestRing) and as the agent (RingFile).
std::vector<long> MappingRssKb(const std::string& path) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  std::vector<long> rss;
  bool in_mapping = false;
  while (std::getline(smaps, line)) {
    const bool header = !line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) && line.find(' ') > line.find('-');
    if (header) {
      in_mapping = line.size() >= path.size() && line.compare(line.size() - path.size(), path.size(), path) == 0;
    } else if (in_mapping && line.rfind("Rss:", 0) == 0) {
      rss.push_back(std::stol(line.substr(4)));
    }
  }
  return rss;
}

TEST_F(DrainerTest, DrainedRingPagesDoNotStayInTheAgentsMemory) {
  TestRingOptions options;
  options.geometry.ring_capacity = 1u << 15;  // 1 MiB of records
  MapLiveRing(options);
  const std::string path = ring_->path();
  uint64_t drained = 0;
  for (int round = 0; round < 4; ++round) {  // 4 x 30000 records: the ring wraps 3.6 times
    for (int i = 0; i < 30000; ++i) ASSERT_TRUE(ring_->Push(kMs));
    drained += agent_.Drain(t0_);
  }
  EXPECT_EQ(drained, 120000u);
  // Without releasing, the agent's mapping would hold all 1024 KiB of record pages, as the writer's
  // does; now at most the header, names and the undrained tail (< two 64 KiB release windows and
  // the kernel's 64 KiB fault-around window).
  const std::vector<long> rss = MappingRssKb(path);
  ASSERT_EQ(rss.size(), 2u);
  EXPECT_GE(*std::max_element(rss.begin(), rss.end()), 1024);  // the writer's: every record page
  EXPECT_LT(*std::min_element(rss.begin(), rss.end()), 256);   // the agent's
}

}  // namespace
}  // namespace loopwatch::agent
