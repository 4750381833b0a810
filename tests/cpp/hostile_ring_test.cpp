// Issue 5's list of hostile or broken files in the ring directory, each put next to a healthy ring:
// random bytes, empty, cut mid-header, a header claiming a ring larger than the file, wrong magic,
// wrong major version, a symlink, a FIFO, a directory, a file of a user the agent does not accept,
// and a file truncated by its writer while the agent has it mapped. Each must be refused or retired
// with its counted reason while the healthy ring keeps being drained and /metrics keeps rendering.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>

#include "agent.h"
#include "discover/bus_error_guard.h"
#include "metric_reader.h"
#include "test_ring.h"

namespace loopwatch::agent {
namespace {

using testing::LabelSubset;
using testing::LockHolder;
using testing::MetricReader;
using testing::RingImage;
using testing::TempDir;
using testing::TestRing;
using testing::TestRingOptions;
using Clock = std::chrono::steady_clock;

void WriteFile(const std::string& path, const void* bytes, std::size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(bytes), static_cast<std::streamsize>(size));
}

void WriteImage(const std::string& path, RingImage& image, std::size_t size) { WriteFile(path, image.data(), size); }

class HostileRingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    healthy_ = std::make_unique<TestRing>(dir_.File("lw-1-1-1.ring"), Options(1));
    healthy_holder_ = std::make_unique<LockHolder>(healthy_->path());
    ASSERT_TRUE(healthy_holder_->locked());
  }
  static TestRingOptions Options(int32_t pid) {
    TestRingOptions options;
    options.pid = pid;
    return options;
  }
  double Refused(const std::string& reason) {
    return MetricReader(*agent_.registry()).Value("loopwatch_agent_rings_refused_total", {{"reason", reason}}).value_or(0);
  }
  double Callbacks(int32_t pid) {
    const LabelSubset loop = {{"service", "checkout"}, {"pid", std::to_string(pid)}, {"loop", "1"}};
    return MetricReader(*agent_.registry()).Value("loopwatch_callbacks_total", loop).value_or(-1);
  }
  // The healthy ring still gets drained, and the exposition still renders with every refusal in it.
  void ExpectAgentStillServes(int healthy_samples) {
    for (int i = 0; i < healthy_samples; ++i) ASSERT_TRUE(healthy_->Push(1000));
    agent_.Drain(now_);
    EXPECT_EQ(Callbacks(1), healthy_total_ += healthy_samples);
    std::string text;
    agent_.AppendMetricsText(text);
    EXPECT_NE(text.find("loopwatch_agent_rings_refused_total{reason="), std::string::npos);
    EXPECT_NE(text.find("pid=\"1\""), std::string::npos);
  }
  void Scan(std::chrono::seconds later = std::chrono::seconds(0)) {
    now_ += later;
    agent_.Scan(now_);
  }

  TempDir dir_;
  Agent agent_{{dir_.path(), {}, {}}};
  Clock::time_point now_ = Clock::now();
  std::unique_ptr<TestRing> healthy_;
  std::unique_ptr<LockHolder> healthy_holder_;
  double healthy_total_ = 0;
};

TEST_F(HostileRingTest, BadFilesAreRefusedWithTheirReasons) {
  std::mt19937 random(7);
  std::vector<unsigned char> noise(64 * 1024);
  for (auto& byte : noise) byte = static_cast<unsigned char>(random());
  WriteFile(dir_.File("random.ring"), noise.data(), noise.size());
  WriteFile(dir_.File("empty.ring"), nullptr, 0);
  {
    RingImage image(Options(2));
    WriteImage(dir_.File("half-header.ring"), image, sizeof(protocol::RingHeader) / 2);
  }
  {
    RingImage image(Options(3));  // a header claiming twice the ring the file holds
    image.header()->ring_capacity *= 2;
    WriteImage(dir_.File("big-claim.ring"), image, image.size());
  }
  {
    RingImage image(Options(4));
    image.header()->magic.store(0x4c4f4f50);
    WriteImage(dir_.File("magic.ring"), image, image.size());
  }
  {
    RingImage image(Options(5));
    image.header()->version_major = protocol::kVersionMajor + 1;
    WriteImage(dir_.File("major.ring"), image, image.size());
  }
  TestRing elsewhere(dir_.File("target.notring"), Options(6));  // valid, but reached only by a symlink
  ASSERT_EQ(symlink(elsewhere.path().c_str(), dir_.File("symlink.ring").c_str()), 0);
  ASSERT_EQ(mkfifo(dir_.File("fifo.ring").c_str(), 0600), 0);
  ASSERT_EQ(mkdir(dir_.File("directory.ring").c_str(), 0700), 0);

  Scan();
  Scan(RingDirectory::kCreationGrace + std::chrono::seconds(1));  // files still "being created" get a grace

  EXPECT_EQ(agent_.rings().size(), 1u);
  EXPECT_EQ(Refused("bad_magic"), 2.0);  // random bytes, wrong magic
  EXPECT_EQ(Refused("too_small"), 2.0);  // empty, cut mid-header
  EXPECT_EQ(Refused("bad_geometry") + Refused("file_size_mismatch"), 1.0);
  EXPECT_EQ(Refused("version_mismatch"), 1.0);
  EXPECT_EQ(Refused("not_regular_file"), 3.0);  // symlink, FIFO, directory
  ExpectAgentStillServes(5);
  // Refused once, not on every scan.
  Scan(std::chrono::seconds(1));
  EXPECT_EQ(Refused("bad_magic"), 2.0);
  EXPECT_EQ(Refused("not_regular_file"), 3.0);
  EXPECT_TRUE(std::filesystem::exists(elsewhere.path()));  // the agent deletes nothing it refused
}

TEST_F(HostileRingTest, FilesOfOtherUsersAreRefused) {
  Agent strict({dir_.path(), {}, OwnerPolicy{{static_cast<uint32_t>(geteuid()) + 1}}});
  strict.Scan(now_);
  EXPECT_EQ(strict.rings().size(), 0u);
  EXPECT_EQ(MetricReader(*strict.registry()).Value("loopwatch_agent_rings_refused_total", {{"reason", "owner_not_allowed"}}),
            1.0);
  Agent listed({dir_.path(), {}, OwnerPolicy{{static_cast<uint32_t>(geteuid()) + 1, static_cast<uint32_t>(geteuid())}}});
  listed.Scan(now_);
  EXPECT_EQ(listed.rings().size(), 1u);
}

class TruncatedWhileMappedTest : public HostileRingTest, public ::testing::WithParamInterface<off_t> {};

TEST_P(TruncatedWhileMappedTest, IsRetiredAsTruncatedWithoutSigbus) {
  TestRing victim(dir_.File("lw-2-1-1.ring"), Options(2));
  LockHolder victim_holder(victim.path());
  ASSERT_TRUE(victim_holder.locked());
  Scan();
  ASSERT_EQ(agent_.rings().size(), 2u);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(victim.Push(1000));
  agent_.Drain(now_);
  ASSERT_EQ(Callbacks(2), 100.0);

  for (int i = 0; i < 100; ++i) ASSERT_TRUE(victim.Push(1000));  // samples the agent will never see
  ASSERT_EQ(truncate(victim.path().c_str(), GetParam()), 0);
  // The status reads the mapped header, which may now lie past the end of the file.
  const uint64_t faults_before = BusErrorGuard::FaultsHandled();
  const AgentStatus status = agent_.BuildStatus();
  EXPECT_EQ(status.rings.size(), 2u);
  if (GetParam() == 0) {
    EXPECT_GT(BusErrorGuard::FaultsHandled(), faults_before);
  }
  agent_.Drain(now_);

  EXPECT_EQ(Refused("truncated"), 1.0);
  EXPECT_EQ(agent_.rings().size(), 1u);
  EXPECT_TRUE(std::filesystem::exists(victim.path()));  // its writer is alive: the file is kept
  EXPECT_EQ(Callbacks(2), -1.0);                         // its series are gone
  ExpectAgentStillServes(3);
  Scan(std::chrono::seconds(1));  // a truncated file is not mapped again while it stays the same file
  EXPECT_EQ(agent_.rings().size(), 1u);
  EXPECT_EQ(Refused("truncated"), 1.0);
}

// 0: header and all; 4096: header kept, ring and names gone.
INSTANTIATE_TEST_SUITE_P(Lengths, TruncatedWhileMappedTest, ::testing::Values(off_t{0}, off_t{4096}));

}  // namespace
}  // namespace loopwatch::agent
