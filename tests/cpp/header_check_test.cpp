// Tests of CheckHeader (protocol/loopwatch/header_check.h): a file laid out like the shim's passes,
// every kind of bad header gets its own HeaderError, and hostile bytes never make it read outside
// the buffer (run this binary's ASan build, header_check_asan_test, to prove the last point).
#include "loopwatch/header_check.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>

#include "test_ring.h"

namespace loopwatch::protocol {
namespace {

using testing::RingImage;
using testing::TestRingOptions;

HeaderError Check(RingImage& image) { return CheckHeader(image.data(), image.size()).error; }

TEST(HeaderCheckTest, AcceptsFileLaidOutByRingGeometry) {
  TestRingOptions options;
  options.service = "payments";
  options.pid = 31337;
  options.loop_id = 3;
  options.kind = LoopKind::kAsyncio;
  options.clock = ClockKind::kTsc;
  options.ns_per_tick = 0.37;
  RingImage image(options);
  const HeaderCheck check = CheckHeader(image.data(), image.size());
  ASSERT_EQ(check.error, HeaderError::kOk);
  EXPECT_EQ(check.header.service_name(), "payments");
  EXPECT_EQ(check.header.pid, 31337);
  EXPECT_EQ(check.header.loop_id, 3u);
  EXPECT_EQ(check.header.loop_kind, LoopKind::kAsyncio);
  EXPECT_EQ(check.header.clock_kind, ClockKind::kTsc);
  EXPECT_EQ(check.header.ring_capacity, options.geometry.ring_capacity);
  EXPECT_EQ(check.header.ring_offset, options.geometry.ring_offset());
  EXPECT_DOUBLE_EQ(check.header.TicksToSeconds(1'000'000'000), 0.37);
}

TEST(HeaderCheckTest, AcceptsDefaultGeometry) {
  TestRingOptions options;
  options.geometry = kDefaultGeometry;
  RingImage image(options);
  EXPECT_EQ(Check(image), HeaderError::kOk);
}

TEST(HeaderCheckTest, AcceptsUnalignedBuffer) {
  RingImage image;
  std::vector<unsigned char> shifted(image.size() + 1);
  std::memcpy(shifted.data() + 1, image.data(), image.size());
  EXPECT_EQ(CheckHeader(shifted.data() + 1, image.size()).error, HeaderError::kOk);
}

TEST(HeaderCheckTest, AcceptsNewerMinorVersion) {
  RingImage image;
  image.header()->version_minor = kVersionMinor + 7;
  EXPECT_EQ(Check(image), HeaderError::kOk);
}

// v1.3: the attribution table lies between the report region and the ring, in whole 32-byte slots.
TEST(HeaderCheckTest, ReadsTheAttributionTableOfAV13File) {
  RingImage image;
  const HeaderCheck check = CheckHeader(image.data(), image.size());
  ASSERT_TRUE(check.ok());
  EXPECT_EQ(check.header.attribution_offset, TestRingOptions{}.geometry.attribution_offset());
  EXPECT_EQ(check.header.attribution_capacity, 8u << 10);
}

TEST(HeaderCheckTest, RefusesAnAttributionTableOutsideItsPlace) {
  const auto refused = [](auto&& corrupt) {
    RingImage image;
    corrupt(*image.header());
    return Check(image);
  };
  EXPECT_EQ(refused([](RingHeader& h) { h.attribution_offset = h.names_offset; }), HeaderError::kBadGeometry);  // over the names
  EXPECT_EQ(refused([](RingHeader& h) { h.attribution_offset += 4; }), HeaderError::kBadGeometry);  // misaligned
  EXPECT_EQ(refused([](RingHeader& h) { h.attribution_capacity += 16; }), HeaderError::kBadGeometry);  // not whole slots
  EXPECT_EQ(refused([](RingHeader& h) { h.attribution_capacity = static_cast<uint32_t>(h.ring_offset); }),
            HeaderError::kBadGeometry);  // into the ring
  EXPECT_EQ(refused([](RingHeader& h) { h.attribution_offset = h.file_size + 64; }), HeaderError::kBadGeometry);
  EXPECT_EQ(refused([](RingHeader& h) { h.attribution_capacity = 0; }), HeaderError::kOk);  // no table
}

TEST(HeaderCheckTest, IgnoresTheReservedAttributionBytesOfAV12File) {
  RingImage image;
  image.header()->version_minor = 2;
  image.header()->attribution_offset = 12345;  // garbage where a 1.2 writer had reserved space
  image.header()->attribution_capacity = 7;
  const HeaderCheck check = CheckHeader(image.data(), image.size());
  ASSERT_TRUE(check.ok());
  EXPECT_EQ(check.header.attribution_capacity, 0u);
  EXPECT_EQ(check.header.attribution_offset, 0u);
}

TEST(HeaderCheckTest, ReportsZeroMagicAsNotReady) {
  TestRingOptions options;
  options.publish = false;
  RingImage image(options);
  EXPECT_EQ(Check(image), HeaderError::kNotReady);
}

TEST(HeaderCheckTest, RefusesBadMagic) {
  RingImage image;
  image.header()->magic.store(kMagic ^ 1);
  EXPECT_EQ(Check(image), HeaderError::kBadMagic);
}

TEST(HeaderCheckTest, RefusesWrongMajorVersion) {
  RingImage image;
  image.header()->version_major = kVersionMajor + 1;
  EXPECT_EQ(Check(image), HeaderError::kVersionMismatch);
}

TEST(HeaderCheckTest, RefusesFileShorterThanHeader) {
  RingImage image;
  EXPECT_EQ(CheckHeader(image.data(), sizeof(RingHeader) - 1).error, HeaderError::kTooSmall);
  EXPECT_EQ(CheckHeader(nullptr, image.size()).error, HeaderError::kTooSmall);
}

TEST(HeaderCheckTest, RefusesFileSizeMismatch) {
  RingImage image;
  EXPECT_EQ(CheckHeader(image.data(), image.size() - 32).error, HeaderError::kFileSizeMismatch);
  image.header()->file_size += 4096;
  EXPECT_EQ(Check(image), HeaderError::kFileSizeMismatch);
}

TEST(HeaderCheckTest, RefusesBadHeaderSize) {
  RingImage image;
  image.header()->header_size = sizeof(RingHeader) - 64;
  EXPECT_EQ(Check(image), HeaderError::kBadHeaderSize);
}

TEST(HeaderCheckTest, RefusesBadSampleSize) {
  RingImage image;
  image.header()->sample_size = 64;
  EXPECT_EQ(Check(image), HeaderError::kBadSampleSize);
}

TEST(HeaderCheckTest, RefusesRingCapacityNotPowerOfTwo) {
  RingImage image;
  image.header()->ring_capacity = 1000;
  EXPECT_EQ(Check(image), HeaderError::kBadGeometry);
}

TEST(HeaderCheckTest, RefusesRingCapacityLargerThanFile) {
  RingImage image;  // 1024 records
  image.header()->ring_capacity = 2048;
  EXPECT_EQ(Check(image), HeaderError::kBadGeometry);
}

TEST(HeaderCheckTest, RefusesRingCapacityBelowMinimum) {
  RingImage image;
  image.header()->ring_capacity = kMinRingCapacity / 2;
  EXPECT_EQ(Check(image), HeaderError::kBadGeometry);
}

TEST(HeaderCheckTest, RefusesNameTableOverlappingReportRegion) {
  RingImage image;
  image.header()->report_offset = image.header()->names_offset + image.header()->names_capacity - 8;
  EXPECT_EQ(Check(image), HeaderError::kBadGeometry);
}

// The report region starts with an atomic seq (stall_report.h): a misaligned one is undefined behaviour.
TEST(HeaderCheckTest, RefusesMisalignedReportRegion) {
  RingImage image;
  image.header()->report_offset += 4;
  image.header()->report_capacity -= 4;
  EXPECT_EQ(Check(image), HeaderError::kBadGeometry);
}

TEST(HeaderCheckTest, RefusesRingOverlappingHeader) {
  RingImage image;
  image.header()->names_offset = 512;  // inside the header
  EXPECT_EQ(Check(image), HeaderError::kBadGeometry);
}

TEST(HeaderCheckTest, RefusesUnknownLoopKind) {
  RingImage image;
  image.header()->loop_kind = 0;
  EXPECT_EQ(Check(image), HeaderError::kBadEnum);
  image.header()->loop_kind = 3;
  EXPECT_EQ(Check(image), HeaderError::kBadEnum);
}

TEST(HeaderCheckTest, RefusesUnknownClockKind) {
  RingImage image;
  image.header()->clock_kind = 9;
  EXPECT_EQ(Check(image), HeaderError::kBadEnum);
}

TEST(HeaderCheckTest, RefusesClockThatIsNotAFinitePositiveRate) {
  for (double rate : {std::numeric_limits<double>::quiet_NaN(), 0.0, -1.0, std::numeric_limits<double>::infinity(), 1e7}) {
    RingImage image;
    image.header()->clock_ns_per_tick = rate;
    EXPECT_EQ(Check(image), HeaderError::kBadClock) << "rate " << rate;
  }
}

TEST(HeaderCheckTest, NamesEveryErrorForTheRefusedMetric) {
  EXPECT_EQ(HeaderErrorName(HeaderError::kNotReady), "not_ready");
  EXPECT_EQ(HeaderErrorName(HeaderError::kFileSizeMismatch), "file_size_mismatch");
  EXPECT_EQ(HeaderErrorName(HeaderError::kBadClock), "bad_clock");
}

// Each truncation is copied into a buffer of exactly that length, so ASan flags any read past it.
TEST(HeaderCheckTest, NeverReadsPastTruncatedFile) {
  RingImage image;
  for (uint64_t length = 0; length <= sizeof(RingHeader) + 64; ++length) {
    auto exact = std::make_unique<unsigned char[]>(length + 1);  // +1: make_unique of 0 is fine too
    std::memcpy(exact.get(), image.data(), length);
    const HeaderError error = CheckHeader(length == 0 ? nullptr : exact.get(), length).error;
    if (length < sizeof(RingHeader)) {
      EXPECT_EQ(error, HeaderError::kTooSmall) << length;
    } else {
      EXPECT_EQ(error, HeaderError::kFileSizeMismatch) << length;
    }
  }
}

// Random bytes (half of them with a valid magic and major version, so that the later checks run):
// no crash, and anything accepted really fits in the buffer.
TEST(HeaderCheckTest, SurvivesRandomBuffers) {
  std::mt19937_64 random(12345);
  std::uniform_int_distribution<uint64_t> length_of(0, 3 * 4096);
  int accepted = 0, past_magic = 0;
  for (int i = 0; i < 3000; ++i) {
    const uint64_t length = length_of(random);
    std::vector<unsigned char> bytes(length);
    for (auto& b : bytes) b = static_cast<unsigned char>(random());
    if (i % 2 == 0 && length >= sizeof(RingHeader)) {
      std::memcpy(bytes.data(), &kMagic, sizeof(kMagic));
      std::memcpy(bytes.data() + offsetof(RingHeader, version_major), &kVersionMajor, sizeof(kVersionMajor));
    }
    const HeaderCheck check = CheckHeader(bytes.data(), length);
    if (check.error != HeaderError::kBadMagic && check.error != HeaderError::kTooSmall) ++past_magic;
    if (check.ok()) {
      ++accepted;
      EXPECT_LE(check.header.ring_offset + uint64_t{check.header.ring_capacity} * sizeof(Sample), length);
      EXPECT_LE(check.header.names_offset + check.header.names_capacity, length);
    }
  }
  EXPECT_GT(past_magic, 1000);
  EXPECT_EQ(accepted, 0);
}

}  // namespace
}  // namespace loopwatch::protocol
