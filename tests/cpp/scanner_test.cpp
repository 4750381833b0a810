// Tests of discovery (agent/src/scanner.h, ring_directory.h, ring_file.h, refusals.h) through the
// Agent: a valid ring is mapped; garbage, bad magic, empty, symlinked and FIFO files are refused with
// their reason, each counted once however many scans see it; files still being created are retried.
#include "discover/scanner.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <random>

#include "agent.h"
#include "metric_reader.h"
#include "test_ring.h"

namespace loopwatch::agent {
namespace {

using testing::LockHolder;
using testing::MetricReader;
using testing::TempDir;
using testing::TestRing;
using testing::TestRingOptions;
using Clock = std::chrono::steady_clock;

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

std::string RandomBytes(std::size_t n) {
  std::mt19937 random(42);
  std::string bytes(n, '\0');
  for (auto& c : bytes) c = static_cast<char>(random());
  return bytes;
}

class ScannerTest : public ::testing::Test {
 protected:
  double Refused(const std::string& reason) {
    return MetricReader(*agent_.registry()).Value("loopwatch_agent_rings_refused_total", {{"reason", reason}}).value_or(-1);
  }
  double RingsMapped() { return MetricReader(*agent_.registry()).Value("loopwatch_agent_rings").value_or(-1); }

  TempDir dir_;
  Agent agent_{{dir_.path(), {}}};
  Clock::time_point t0_ = Clock::now();
};

TEST_F(ScannerTest, MapsValidRingAndRefusesBadFilesWithTheirReasons) {
  TestRing valid(dir_.File("lw-10-1-1.ring"));
  LockHolder holder(valid.path());
  WriteFile(dir_.File("garbage.ring"), RandomBytes(8192));
  {
    testing::RingImage image;
    image.header()->magic.store(0x1234);
    WriteFile(dir_.File("badmagic.ring"), std::string(reinterpret_cast<char*>(image.data()), image.size()));
  }
  {
    testing::RingImage image;
    image.header()->version_major = 2;
    WriteFile(dir_.File("future.ring"), std::string(reinterpret_cast<char*>(image.data()), image.size()));
  }
  ASSERT_EQ(symlink(valid.path().c_str(), dir_.File("link.ring").c_str()), 0);
  ASSERT_EQ(mkfifo(dir_.File("fifo.ring").c_str(), 0600), 0);
  ASSERT_EQ(mkdir(dir_.File("dir.ring").c_str(), 0700), 0);
  WriteFile(dir_.File(".hidden.ring"), RandomBytes(100));  // ignored: dot-name
  WriteFile(dir_.File("notes.txt"), RandomBytes(100));     // ignored: not *.ring

  agent_.Scan(t0_);

  EXPECT_EQ(RingsMapped(), 1.0);
  ASSERT_EQ(agent_.rings().size(), 1u);
  EXPECT_EQ(agent_.rings().rings()[0]->file().path(), valid.path());
  EXPECT_EQ(Refused("bad_magic"), 2.0);
  EXPECT_EQ(Refused("version_mismatch"), 1.0);
  EXPECT_EQ(Refused("not_regular_file"), 3.0);
  EXPECT_EQ(Refused("too_small"), 0.0);
  const auto& refused = agent_.metrics().refused();
  EXPECT_EQ(refused.size(), 3u);  // nothing for the ignored files
}

TEST_F(ScannerTest, CountsABadFileOnceAcrossScansUntilItChanges) {
  WriteFile(dir_.File("garbage.ring"), RandomBytes(4096));
  for (int i = 0; i < 5; ++i) agent_.Scan(t0_ + std::chrono::seconds(i));
  EXPECT_EQ(Refused("bad_magic"), 1.0);
  WriteFile(dir_.File("garbage.ring"), RandomBytes(5000));  // rewritten: a new file to judge
  agent_.Scan(t0_ + std::chrono::seconds(10));
  agent_.Scan(t0_ + std::chrono::seconds(11));
  EXPECT_EQ(Refused("bad_magic"), 2.0);
}

TEST_F(ScannerTest, EmptyFileIsRefusedAsTooSmallOnlyAfterTheCreationGrace) {
  WriteFile(dir_.File("empty.ring"), "");
  agent_.Scan(t0_);
  agent_.Scan(t0_ + std::chrono::seconds(2));
  EXPECT_EQ(Refused("too_small"), 0.0);
  agent_.Scan(t0_ + RingDirectory::kCreationGrace + std::chrono::seconds(1));
  agent_.Scan(t0_ + RingDirectory::kCreationGrace + std::chrono::seconds(2));
  EXPECT_EQ(Refused("too_small"), 1.0);
}

TEST_F(ScannerTest, MapsANotReadyFileOnceItsWriterPublishesIt) {
  TestRingOptions options;
  options.publish = false;
  TestRing ring(dir_.File("lw-11-1-1.ring"), options);
  LockHolder holder(ring.path());
  agent_.Scan(t0_);
  EXPECT_EQ(RingsMapped(), 0.0);
  EXPECT_EQ(Refused("not_ready"), 0.0);
  ring.Publish();
  agent_.Scan(t0_ + std::chrono::seconds(1));
  EXPECT_EQ(RingsMapped(), 1.0);
  EXPECT_EQ(Refused("not_ready"), 0.0);
}

TEST_F(ScannerTest, RefusesAFileThatStaysNotReadyBeyondTheGrace) {
  TestRingOptions options;
  options.publish = false;
  TestRing ring(dir_.File("lw-12-1-1.ring"), options);
  agent_.Scan(t0_);
  agent_.Scan(t0_ + RingDirectory::kCreationGrace);
  agent_.Scan(t0_ + RingDirectory::kCreationGrace + std::chrono::seconds(1));
  EXPECT_EQ(Refused("not_ready"), 1.0);
  EXPECT_EQ(RingsMapped(), 0.0);
}

TEST_F(ScannerTest, MapsEachRingOnceAcrossScans) {
  TestRing ring(dir_.File("lw-13-1-1.ring"));
  LockHolder holder(ring.path());
  for (int i = 0; i < 3; ++i) agent_.Scan(t0_ + std::chrono::seconds(i));
  EXPECT_EQ(agent_.rings().size(), 1u);
}

TEST_F(ScannerTest, DefersARingWithTheSameServicePidAndLoopAsAMappedOne) {
  TestRing first(dir_.File("lw-14-1-1.ring"));
  LockHolder first_holder(first.path());
  agent_.Scan(t0_);
  TestRing second(dir_.File("lw-14-2-1.ring"));  // same service, pid, loop (pid reuse)
  LockHolder second_holder(second.path());
  agent_.Scan(t0_ + std::chrono::seconds(1));
  ASSERT_EQ(agent_.rings().size(), 1u);
  EXPECT_EQ(agent_.rings().rings()[0]->file().path(), first.path());
  EXPECT_EQ(agent_.metrics().refused().size(), 0u);  // deferred, not refused
}

TEST_F(ScannerTest, SurvivesRingDirectoryThatDoesNotExist) {
  Agent agent({dir_.File("missing"), {}});
  agent.Scan(t0_);
  agent.Drain(t0_);
  EXPECT_EQ(agent.rings().size(), 0u);
}

TEST_F(ScannerTest, SurvivesFilesRemovedAndReplacedBetweenScans) {
  constexpr int kRounds = 20;
  for (int i = 0; i < kRounds; ++i) {
    TestRingOptions options;
    options.pid = 1000 + i;
    {
      TestRing ring(dir_.File("lw-15-1-1.ring"), options);
      agent_.Scan(t0_ + std::chrono::seconds(2 * i));
      unlink(ring.path().c_str());
      WriteFile(dir_.File("lw-15-1-1.ring"), RandomBytes(100 + i));  // replaced under the same name
    }
    agent_.Scan(t0_ + std::chrono::seconds(2 * i + 1));
    agent_.Drain(t0_ + std::chrono::seconds(2 * i + 1));
    unlink(dir_.File("lw-15-1-1.ring").c_str());
  }
  // Every ring was mapped once; their writers (none held a lock) are gone, so they wait to retire.
  EXPECT_EQ(agent_.rings().size(), static_cast<std::size_t>(kRounds));
  agent_.Scan(t0_ + std::chrono::minutes(5));
  EXPECT_EQ(agent_.rings().size(), 0u);
  EXPECT_EQ(agent_.metrics().rings_retired(), static_cast<uint64_t>(kRounds));
}

}  // namespace
}  // namespace loopwatch::agent
