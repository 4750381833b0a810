// The sample ring under real concurrency: the unit tests in ring_test.cpp run writer and reader on
// one thread, so they cannot catch a missing release/acquire pair or a reader that copies a slot the
// writer is overwriting. Here a writer thread (the shim's role) pushes millions of numbered samples
// through protocol::RingWriter into a 1024-slot ring, wrapping it thousands of times, while a reader
// thread (the agent's role) drains it with protocol::RingReader. Built three times: in the normal
// build, under ASan/UBSan (build-asan) and under ThreadSanitizer (build-tsan, scripts/test.sh), where
// any unsynchronized access to a slot or a position is reported as a data race and fails the test.
//
// Every sample carries its sequence number and a checksum over all its other fields, each of which
// is derived from the sequence number: a torn copy (half old record, half new) fails the checksum.
// The test requires: every sample the writer did not count as dropped arrives exactly once, in order,
// intact; written + dropped == pushed; and the header's `dropped` word equals the writer's count.
//
//   LOOPWATCH_STRESS_SAMPLES=N  samples per test (default 4 Mi; a longer local run: 100000000)
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "loopwatch/layout.h"
#include "loopwatch/ring.h"
#include "test_ring.h"

namespace loopwatch::protocol {
namespace {

constexpr uint32_t kCapacity = 1024;  // small, so that millions of samples wrap it thousands of times

uint64_t SamplesPerTest() {
  const char* env = std::getenv("LOOPWATCH_STRESS_SAMPLES");
  return env != nullptr && *env != '\0' ? std::strtoull(env, nullptr, 10) : uint64_t{4} << 20;
}

// splitmix64's finalizer: every output bit depends on every input bit.
constexpr uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

constexpr uint32_t Checksum(const Sample& s) {
  const uint64_t h = Mix(s.start_ticks ^ Mix(s.duration_ticks ^ Mix(s.lag_ticks ^ Mix(s.name_id))));
  return static_cast<uint32_t>(h ^ (h >> 32));
}

// start_ticks is the sequence number; the other fields differ between any two sequence numbers, so a
// slot read while it is rewritten mixes two samples and its checksum no longer matches.
constexpr Sample NumberedSample(uint64_t seq) {
  Sample s{};
  s.start_ticks = seq;
  s.duration_ticks = Mix(seq);
  s.lag_ticks = Mix(~seq);
  s.name_id = static_cast<uint32_t>(Mix(seq + 1));
  s.handles_kind = Checksum(s);
  return s;
}

struct ReaderPace {
  uint32_t max_batch;  // the reader drains at most this many per Drain call (at least 1)
  bool yield_between_batches;  // gives the writer the CPU: the ring fills up and drops happen
};

struct StressResult {
  uint64_t written = 0;  // TryPush returned true
  uint64_t dropped = 0;  // TryPush returned false
  uint64_t header_dropped = 0;
  std::vector<bool> dropped_seq;   // by the writer thread
  std::vector<bool> received_seq;  // by the reader thread
  uint64_t received = 0;
  uint64_t bad_checksums = 0;
  uint64_t out_of_order = 0;  // not strictly after the previous sample (a repeat or a reordering)
  uint64_t unknown_seq = 0;   // a sequence number never pushed
  uint64_t corrupt_drains = 0;
  uint64_t first_bad_seq = ~uint64_t{0};
};

// Runs one writer thread and one reader thread over a fresh ring whose positions start at
// `start_pos` (as when a restarted agent resumes a live ring), then joins both.
StressResult RunStress(uint64_t samples, ReaderPace pace, uint64_t start_pos) {
  testing::RingImage image(testing::TestRingOptions{
      .geometry = {.ring_capacity = kCapacity, .names_capacity = 4096, .report_capacity = 0}});
  RingHeader* header = image.header();
  header->write_pos.store(start_pos, std::memory_order_relaxed);
  header->read_pos.store(start_pos, std::memory_order_relaxed);

  StressResult r;
  r.dropped_seq.assign(samples, false);
  r.received_seq.assign(samples, false);
  // Set by the writer after its last push (release), so the reader's final drain, which starts after
  // its acquire load saw it, sees every record the writer published.
  std::atomic<bool> writer_done{false};

  // Both threads are constructed on this thread before they start; std::thread's start is the
  // happens-before edge that publishes the positions stored above.
  std::thread writer([&] {
    RingWriter w(header, image.records(), kCapacity);
    for (uint64_t seq = 0; seq < samples; ++seq) {
      if (w.TryPush(NumberedSample(seq))) {
        ++r.written;
      } else {
        ++r.dropped;
        r.dropped_seq[seq] = true;
        // A real loop runs a callback between two pushes; without a pause here this thread fills
        // the ring and drops the rest before the reader is even scheduled, and the ring never wraps.
        std::this_thread::yield();
      }
    }
    writer_done.store(true, std::memory_order_release);
  });

  std::thread reader([&] {
    RingReader rd(header, image.records(), kCapacity);
    bool have_last = false;
    uint64_t last = 0;
    uint64_t rng = 12345;
    auto sink = [&](const Sample& s) {
      ++r.received;
      const uint64_t seq = s.start_ticks;
      bool bad = false;
      if (Checksum(s) != s.handles_kind) {
        ++r.bad_checksums;
        bad = true;
      }
      if (have_last && seq <= last) {
        ++r.out_of_order;
        bad = true;
      }
      if (seq >= samples) {
        ++r.unknown_seq;
        bad = true;
      } else {
        r.received_seq[seq] = true;
      }
      if (bad && r.first_bad_seq == ~uint64_t{0}) r.first_bad_seq = seq;
      have_last = true;
      last = seq;
    };
    for (;;) {
      // Read before draining: if it is true, the drain below sees everything that will ever be written.
      const bool finished = writer_done.load(std::memory_order_acquire);
      uint32_t got = 0;
      do {
        rng = Mix(rng);
        const uint32_t batch = 1 + static_cast<uint32_t>(rng % pace.max_batch);  // varying batch ends
        if (rd.Drain(batch, sink, &got) != DrainStatus::kOk) ++r.corrupt_drains;
        if (pace.yield_between_batches) std::this_thread::yield();
      } while (got != 0 && r.corrupt_drains == 0);
      if (finished || r.corrupt_drains != 0) break;
      std::this_thread::yield();
    }
  });

  writer.join();
  reader.join();
  // Relaxed: both threads are joined; join is the synchronization.
  r.header_dropped = header->dropped.load(std::memory_order_relaxed);
  return r;
}

void ExpectExactAccounting(const StressResult& r, uint64_t samples) {
  EXPECT_EQ(r.corrupt_drains, 0u) << "the reader saw write_pos move backwards or run ahead";
  EXPECT_EQ(r.bad_checksums, 0u) << "torn or stale records; first bad seq " << r.first_bad_seq;
  EXPECT_EQ(r.out_of_order, 0u) << "repeated or reordered records; first bad seq " << r.first_bad_seq;
  EXPECT_EQ(r.unknown_seq, 0u) << "records never pushed; first bad seq " << r.first_bad_seq;
  EXPECT_EQ(r.written + r.dropped, samples);
  EXPECT_EQ(r.header_dropped, r.dropped) << "header->dropped must count exactly the failed pushes";
  EXPECT_EQ(r.received, r.written) << "drained + dropped must equal recorded";
  uint64_t missing = 0, both = 0, first_missing = ~uint64_t{0};
  for (uint64_t seq = 0; seq < samples; ++seq) {
    if (!r.received_seq[seq] && !r.dropped_seq[seq]) {
      if (missing++ == 0) first_missing = seq;
    }
    both += r.received_seq[seq] && r.dropped_seq[seq] ? 1 : 0;
  }
  EXPECT_EQ(missing, 0u) << "samples neither received nor counted as dropped; first " << first_missing;
  EXPECT_EQ(both, 0u) << "samples counted as dropped that arrived anyway";
}

TEST(RingStressTest, ReaderDrainingFreelyGetsEverySampleNotCountedAsDropped) {
  const uint64_t samples = SamplesPerTest();
  const StressResult r = RunStress(samples, {.max_batch = 2 * kCapacity, .yield_between_batches = false}, 0);
  ExpectExactAccounting(r, samples);
  EXPECT_GT(r.received, 64u * kCapacity) << "the ring did not wrap often enough to test anything";
  std::printf("ring stress (free reader): %llu pushed, %llu received, %llu dropped\n",
              static_cast<unsigned long long>(samples), static_cast<unsigned long long>(r.received),
              static_cast<unsigned long long>(r.dropped));
}

// A reader that drains small batches and yields after each keeps the ring full most of the time: the
// writer's full-ring path (refresh read_pos, count a drop) races the reader's release of slots.
TEST(RingStressTest, SlowReaderLosesOnlySamplesCountedAsDropped) {
  const uint64_t samples = SamplesPerTest() / 4;
  // Positions start far from zero and not on a slot boundary: a resumed ring behaves the same.
  const StressResult r = RunStress(samples, {.max_batch = 32, .yield_between_batches = true},
                                   (uint64_t{1} << 40) + 7 * kCapacity + 3);
  ExpectExactAccounting(r, samples);
  EXPECT_GT(r.dropped, 0u) << "the ring never filled up: the drop path was not exercised";
  EXPECT_GT(r.received, 64u * kCapacity) << "the ring did not wrap often enough to test anything";
  std::printf("ring stress (slow reader): %llu pushed, %llu received, %llu dropped\n",
              static_cast<unsigned long long>(samples), static_cast<unsigned long long>(r.received),
              static_cast<unsigned long long>(r.dropped));
}

}  // namespace
}  // namespace loopwatch::protocol
