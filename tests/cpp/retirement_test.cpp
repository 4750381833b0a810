// Tests of ring retirement (agent/src/ring_set.h, scanner.h): when a ring's writer dies, the agent
// drains what is left, keeps the series until one scrape has collected them (or 60 s passed), then
// removes the series, unmaps the ring and deletes its file.
#include "drain/ring_set.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>

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
using Clock = std::chrono::steady_clock;

const LabelSubset kLoop = {{"service", "checkout"}, {"pid", "4242"}, {"loop", "1"}};

class RetirementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ring_ = std::make_unique<TestRing>(dir_.File("lw-4242-1-1.ring"));
    holder_ = std::make_unique<LockHolder>(ring_->path());
    ASSERT_TRUE(holder_->locked());
    agent_.Scan(t0_);
    ASSERT_EQ(agent_.rings().size(), 1u);
  }
  MetricReader Read() { return MetricReader(*agent_.registry()); }
  double Callbacks() { return Read().Value("loopwatch_callbacks_total", kLoop).value_or(-1); }
  // What the Exposer does on every GET /metrics (the counter is registered first).
  void Scrape() { agent_.scrape_counter()->Count(); }

  TempDir dir_;
  Agent agent_{{dir_.path(), {}}};
  Clock::time_point t0_ = Clock::now();
  std::unique_ptr<TestRing> ring_;
  std::unique_ptr<LockHolder> holder_;
};

TEST_F(RetirementTest, LiveWriterKeepsItsRing) {
  for (int i = 1; i <= 5; ++i) agent_.Scan(t0_ + std::chrono::seconds(i));
  Scrape();
  agent_.Drain(t0_ + std::chrono::seconds(6));
  EXPECT_EQ(agent_.rings().size(), 1u);
  EXPECT_TRUE(agent_.rings().rings()[0]->writer_alive());
  EXPECT_TRUE(std::filesystem::exists(ring_->path()));
}

TEST_F(RetirementTest, DeadWritersRingIsDrainedScrapedOnceThenRemoved) {
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(ring_->Push(1000));
  agent_.Drain(t0_);
  ASSERT_EQ(Callbacks(), 10.0);
  // The writer's last samples, then it dies before the next drain cycle.
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(ring_->Push(1000));
  holder_->Release();

  agent_.Scan(t0_ + std::chrono::seconds(1));  // first "gone": could be a writer still setting up
  EXPECT_FALSE(agent_.rings().rings()[0]->writer_alive());
  agent_.Scan(t0_ + std::chrono::seconds(2));  // second "gone": final drain
  EXPECT_EQ(Callbacks(), 17.0);
  EXPECT_EQ(agent_.rings().size(), 1u);  // kept: no scrape has seen the final samples yet
  agent_.Drain(t0_ + std::chrono::seconds(3));
  agent_.Scan(t0_ + std::chrono::seconds(4));
  EXPECT_EQ(Callbacks(), 17.0);
  EXPECT_TRUE(std::filesystem::exists(ring_->path()));

  Scrape();
  agent_.Drain(t0_ + std::chrono::seconds(5));

  const MetricReader read = Read();
  EXPECT_EQ(read.Count("loopwatch_callbacks_total", kLoop), 0u);
  EXPECT_EQ(read.Count("loopwatch_callback_duration_seconds", kLoop), 0u);
  EXPECT_EQ(read.Count("loopwatch_named_callback_duration_seconds", kLoop), 0u);
  EXPECT_EQ(read.Count("loopwatch_loop_info", kLoop), 0u);
  EXPECT_EQ(read.Value("loopwatch_agent_rings_retired_total"), 1.0);
  EXPECT_EQ(read.Value("loopwatch_agent_rings"), 0.0);
  EXPECT_EQ(read.Value("loopwatch_agent_samples_drained_total"), 17.0);
  EXPECT_FALSE(std::filesystem::exists(ring_->path()));
  EXPECT_EQ(agent_.rings().size(), 0u);
}

TEST_F(RetirementTest, ScrapeBeforeTheFinalDrainDoesNotCount) {
  holder_->Release();
  agent_.Scan(t0_ + std::chrono::seconds(1));
  Scrape();  // between the two checks: before the final drain
  agent_.Scan(t0_ + std::chrono::seconds(2));
  agent_.Drain(t0_ + std::chrono::seconds(3));
  EXPECT_EQ(agent_.rings().size(), 1u);
  Scrape();
  agent_.Drain(t0_ + std::chrono::seconds(4));
  EXPECT_EQ(agent_.rings().size(), 0u);
}

TEST_F(RetirementTest, RetiresWithoutScrapeAfterTheDeadline) {
  holder_->Release();
  agent_.Scan(t0_ + std::chrono::seconds(1));
  agent_.Scan(t0_ + std::chrono::seconds(2));
  agent_.Drain(t0_ + std::chrono::seconds(2) + Scanner::kRetireDeadline - std::chrono::seconds(1));
  EXPECT_EQ(agent_.rings().size(), 1u);
  agent_.Drain(t0_ + std::chrono::seconds(2) + Scanner::kRetireDeadline);
  EXPECT_EQ(agent_.rings().size(), 0u);
  EXPECT_FALSE(std::filesystem::exists(ring_->path()));
  EXPECT_EQ(agent_.metrics().rings_retired(), 1u);
}

TEST_F(RetirementTest, ClosedFlagCountsAsWriterGone) {
  ring_->header()->writer_flags.fetch_or(protocol::kWriterClosed);  // lock still held
  agent_.Scan(t0_ + std::chrono::seconds(1));
  agent_.Scan(t0_ + std::chrono::seconds(2));
  Scrape();
  agent_.Drain(t0_ + std::chrono::seconds(3));
  EXPECT_EQ(agent_.rings().size(), 0u);
  EXPECT_EQ(agent_.metrics().rings_retired(), 1u);
}

TEST_F(RetirementTest, DoesNotDeleteAFileThatReplacedTheRing) {
  holder_->Release();
  agent_.Scan(t0_ + std::chrono::seconds(1));
  agent_.Scan(t0_ + std::chrono::seconds(2));
  const std::string path = ring_->path();
  std::filesystem::remove(path);
  TestRing replacement(path, [] {
    testing::TestRingOptions options;
    options.pid = 5555;
    return options;
  }());
  Scrape();
  agent_.Drain(t0_ + std::chrono::seconds(3));
  EXPECT_EQ(agent_.metrics().rings_retired(), 1u);
  EXPECT_TRUE(std::filesystem::exists(path));  // the new file under the old name stays
}

}  // namespace
}  // namespace loopwatch::agent
