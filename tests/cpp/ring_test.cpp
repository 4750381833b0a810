// Tests of the SPSC sample ring (protocol/loopwatch/ring.h): order and content across wraparound,
// full-ring drops, refusal of impossible write positions, and a real two-thread transfer.
#include "loopwatch/ring.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "test_ring.h"

namespace loopwatch::protocol {
namespace {

using testing::RingImage;
using testing::TestRingOptions;

constexpr uint32_t kCapacity = 64;

TestRingOptions SmallRing() {
  TestRingOptions options;
  options.geometry = {.ring_capacity = kCapacity, .names_capacity = 64, .report_capacity = 0};
  return options;
}

// A sample whose every field is derived from `seq`, so content errors are caught, not just order.
Sample MakeSample(uint64_t seq) {
  Sample s{};
  s.start_ticks = seq;
  s.duration_ticks = seq * 2654435761u + 17;
  s.lag_ticks = seq % 7 == 0 ? kLagUnknown : seq ^ 0x5555;
  s.name_id = static_cast<uint32_t>(seq % 1000) + kFirstNameId;
  s.handles_kind = Sample::PackHandlesKind(static_cast<uint32_t>(seq % 5000), SampleKind::kTimer);
  return s;
}

bool SameSample(const Sample& a, const Sample& b) {
  return a.start_ticks == b.start_ticks && a.duration_ticks == b.duration_ticks && a.lag_ticks == b.lag_ticks &&
         a.name_id == b.name_id && a.handles_kind == b.handles_kind;
}

TEST(RingTest, DeliversEverySampleOnceInOrderAcrossWraparound) {
  RingImage image(SmallRing());
  RingWriter writer(image.header(), image.records(), kCapacity);
  RingReader reader(image.header(), image.records(), kCapacity);
  const uint32_t push_sizes[] = {1, 7, 63, 64, 13, 50, 2, 64, 31};
  const uint32_t drain_sizes[] = {5, 17, 64, 3, 64, 9};
  uint64_t pushed = 0, failed_pushes = 0, received = 0, mismatches = 0;
  auto sink = [&](const Sample& s) {
    if (!SameSample(s, MakeSample(received))) ++mismatches;
    ++received;
  };
  for (int round = 0; pushed < 4 * kCapacity; ++round) {
    const uint32_t want = push_sizes[round % std::size(push_sizes)];
    for (uint32_t i = 0; i < want; ++i) {
      if (!writer.TryPush(MakeSample(pushed))) {
        ++failed_pushes;
        break;
      }
      ++pushed;
    }
    const uint32_t max_batch = drain_sizes[round % std::size(drain_sizes)];
    uint32_t drained = 0;
    do {
      ASSERT_EQ(reader.Drain(max_batch, sink, &drained), DrainStatus::kOk);
    } while (drained == max_batch && round % 2 == 0);  // odd rounds leave a backlog behind
  }
  uint32_t drained = 0;
  do {
    ASSERT_EQ(reader.Drain(kCapacity, sink, &drained), DrainStatus::kOk);
  } while (drained > 0);
  EXPECT_GE(pushed, 4u * kCapacity);
  EXPECT_EQ(received, pushed);
  EXPECT_EQ(mismatches, 0u);
  EXPECT_EQ(image.header()->dropped.load(), failed_pushes);
  EXPECT_EQ(image.header()->read_pos.load(), pushed);
  EXPECT_EQ(image.header()->write_pos.load(), pushed);
}

TEST(RingTest, FullRingRefusesPushAndCountsEveryDrop) {
  RingImage image(SmallRing());
  RingWriter writer(image.header(), image.records(), kCapacity);
  RingReader reader(image.header(), image.records(), kCapacity);
  for (uint64_t i = 0; i < kCapacity; ++i) ASSERT_TRUE(writer.TryPush(MakeSample(i)));
  constexpr uint64_t kFailed = 37;
  for (uint64_t i = 0; i < kFailed; ++i) EXPECT_FALSE(writer.TryPush(MakeSample(1000 + i)));
  EXPECT_EQ(image.header()->dropped.load(), kFailed);
  EXPECT_EQ(image.header()->write_pos.load(), kCapacity);

  uint32_t drained = 0;
  ASSERT_EQ(reader.Drain(10, [](const Sample&) {}, &drained), DrainStatus::kOk);
  EXPECT_EQ(drained, 10u);
  EXPECT_TRUE(writer.TryPush(MakeSample(kCapacity)));
  EXPECT_EQ(image.header()->dropped.load(), kFailed);  // a successful push is not a drop
  // The sample after the drop gap is the one pushed after the drain.
  std::vector<uint64_t> starts;
  ASSERT_EQ(reader.Drain(kCapacity, [&](const Sample& s) { starts.push_back(s.start_ticks); }, &drained), DrainStatus::kOk);
  ASSERT_EQ(starts.size(), kCapacity - 10 + 1);
  EXPECT_EQ(starts.front(), 10u);
  EXPECT_EQ(starts.back(), kCapacity);
}

TEST(RingTest, ReaderRefusesWritePosRunningAheadByMoreThanCapacity) {
  RingImage image(SmallRing());
  RingReader reader(image.header(), image.records(), kCapacity);
  image.header()->write_pos.store(kCapacity + 1);
  int calls = 0;
  uint32_t drained = 99;
  EXPECT_EQ(reader.Drain(kCapacity, [&](const Sample&) { ++calls; }, &drained), DrainStatus::kCorrupt);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(drained, 0u);
  EXPECT_EQ(image.header()->read_pos.load(), 0u);
}

TEST(RingTest, ReaderAcceptsWritePosExactlyCapacityAhead) {
  RingImage image(SmallRing());
  RingReader reader(image.header(), image.records(), kCapacity);
  image.header()->write_pos.store(kCapacity);
  uint32_t drained = 0;
  EXPECT_EQ(reader.Drain(2 * kCapacity, [](const Sample&) {}, &drained), DrainStatus::kOk);
  EXPECT_EQ(drained, kCapacity);
}

TEST(RingTest, ReaderRefusesWritePosMovingBackwards) {
  RingImage image(SmallRing());
  RingWriter writer(image.header(), image.records(), kCapacity);
  RingReader reader(image.header(), image.records(), kCapacity);
  for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(writer.TryPush(MakeSample(i)));
  uint32_t drained = 0;
  ASSERT_EQ(reader.Drain(kCapacity, [](const Sample&) {}, &drained), DrainStatus::kOk);
  ASSERT_EQ(drained, 10u);
  image.header()->write_pos.store(5);
  EXPECT_EQ(reader.Drain(kCapacity, [](const Sample&) {}, &drained), DrainStatus::kCorrupt);
  EXPECT_EQ(reader.read_pos(), 10u);
}

TEST(RingTest, ReaderResumesFromPublishedReadPosition) {
  RingImage image(SmallRing());
  RingWriter writer(image.header(), image.records(), kCapacity);
  for (uint64_t i = 0; i < 20; ++i) ASSERT_TRUE(writer.TryPush(MakeSample(i)));
  {
    RingReader first(image.header(), image.records(), kCapacity);
    uint32_t drained = 0;
    ASSERT_EQ(first.Drain(8, [](const Sample&) {}, &drained), DrainStatus::kOk);
  }
  RingReader second(image.header(), image.records(), kCapacity);  // a restarted agent
  std::vector<uint64_t> starts;
  uint32_t drained = 0;
  ASSERT_EQ(second.Drain(kCapacity, [&](const Sample& s) { starts.push_back(s.start_ticks); }, &drained), DrainStatus::kOk);
  ASSERT_EQ(starts.size(), 12u);
  EXPECT_EQ(starts.front(), 8u);
}

TEST(RingTest, TwoThreadsTransferEverySampleNotDroppedOnceInOrder) {
  TestRingOptions options;
  options.geometry = {.ring_capacity = 1024, .names_capacity = 64, .report_capacity = 0};
  RingImage image(options);
  constexpr uint64_t kTotal = 1'000'000;
  std::atomic<bool> done{false};
  uint64_t failed_pushes = 0;
  std::vector<uint64_t> given_up;  // seqs the writer never got in

  std::thread writer_thread([&] {
    RingWriter writer(image.header(), image.records(), options.geometry.ring_capacity);
    for (uint64_t seq = 0; seq < kTotal; ++seq) {
      int attempts = 0;
      while (!writer.TryPush(MakeSample(seq))) {
        ++failed_pushes;
        if (++attempts == 64) {
          given_up.push_back(seq);
          break;
        }
        std::this_thread::yield();
      }
    }
    done.store(true, std::memory_order_release);
  });

  RingReader reader(image.header(), image.records(), options.geometry.ring_capacity);
  std::vector<uint32_t> seqs;
  seqs.reserve(kTotal);
  uint64_t checksum_errors = 0;
  auto sink = [&](const Sample& s) {
    if (!SameSample(s, MakeSample(s.start_ticks))) ++checksum_errors;
    seqs.push_back(static_cast<uint32_t>(s.start_ticks));
  };
  uint32_t drained = 0;
  while (!done.load(std::memory_order_acquire)) {
    ASSERT_EQ(reader.Drain(256, sink, &drained), DrainStatus::kOk);
    if (drained == 0) std::this_thread::yield();
  }
  do {
    ASSERT_EQ(reader.Drain(1024, sink, &drained), DrainStatus::kOk);
  } while (drained > 0);
  writer_thread.join();

  EXPECT_EQ(checksum_errors, 0u);
  EXPECT_EQ(image.header()->dropped.load(), failed_pushes);  // every failed TryPush, exactly
  ASSERT_EQ(seqs.size() + given_up.size(), kTotal);
  // Received = every seq except the given-up ones, ascending: each arrived once, in order.
  std::size_t gap = 0;
  uint64_t expected = 0;
  uint64_t misplaced = 0;
  for (uint32_t seq : seqs) {
    while (gap < given_up.size() && given_up[gap] == expected) {
      ++gap;
      ++expected;
    }
    if (seq != expected) ++misplaced;
    ++expected;
  }
  EXPECT_EQ(misplaced, 0u);
}

}  // namespace
}  // namespace loopwatch::protocol
