// Tests of the SIGBUS guard (agent/src/bus_error_guard.h, guarded_mapping.h): touching a guarded
// mapping whose file was truncated reads zeros and flags the mapping instead of killing the process,
// writes land on a private zero page, and a fault in memory that is not guarded still kills.
#include "discover/guarded_mapping.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <csignal>
#include <cstring>
#include <string>

#include "test_ring.h"

namespace loopwatch::agent {
namespace {

constexpr std::size_t kLength = 4 * 4096;

int MakeFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd >= 0 && ftruncate(fd, kLength) != 0) return -1;
  return fd;
}

// Reads through a volatile pointer so the compiler cannot fold the access away.
unsigned char ReadByte(const void* base, std::size_t offset) {
  return static_cast<const volatile unsigned char*>(base)[offset];
}

TEST(GuardedMappingTest, ReadsAfterTruncationYieldZerosAndFlagTheMapping) {
  testing::TempDir dir;
  const int fd = MakeFile(dir.File("ring"));
  ASSERT_GE(fd, 0);
  GuardedMapping::Error error{};
  int error_number = 0;
  auto mapping = GuardedMapping::Map(fd, kLength, &error, &error_number);
  ASSERT_TRUE(mapping) << std::strerror(error_number);
  std::memset(mapping->data(), 0xAB, kLength);
  EXPECT_FALSE(mapping->faulted());
  const uint64_t faults_before = BusErrorGuard::FaultsHandled();

  ASSERT_EQ(ftruncate(fd, 4096), 0);  // the writer shrinks the file under the mapping

  EXPECT_EQ(ReadByte(mapping->data(), 0), 0xAB);  // still backed by the file
  EXPECT_FALSE(mapping->faulted());
  EXPECT_EQ(ReadByte(mapping->data(), 3 * 4096 + 7), 0);  // would be SIGBUS without the guard
  EXPECT_TRUE(mapping->faulted());
  EXPECT_EQ(BusErrorGuard::FaultsHandled(), faults_before + 1);
  // A write (the agent stores read_pos) lands on the replacement page; the page stays readable.
  static_cast<volatile unsigned char*>(mapping->data())[2 * 4096] = 7;
  EXPECT_EQ(ReadByte(mapping->data(), 2 * 4096), 7);
  EXPECT_EQ(BusErrorGuard::FaultsHandled(), faults_before + 2);
  mapping.reset();
  close(fd);
}

TEST(GuardedMappingTest, SlotIsFreedWhenTheMappingGoes) {
  testing::TempDir dir;
  const int fd = MakeFile(dir.File("ring"));
  ASSERT_GE(fd, 0);
  // More mappings over time than there are slots: only concurrent ones take a slot.
  for (std::size_t i = 0; i < BusErrorGuard::kMaxRanges + 10; ++i) {
    GuardedMapping::Error error{};
    int error_number = 0;
    auto mapping = GuardedMapping::Map(fd, kLength, &error, &error_number);
    ASSERT_TRUE(mapping) << "mapping " << i;
    EXPECT_FALSE(mapping->faulted());  // a reused slot does not inherit an old fault
  }
  close(fd);
}

TEST(GuardedMappingDeathTest, AFaultOutsideGuardedMappingsStillKills) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  testing::TempDir dir;
  const int fd = MakeFile(dir.File("ring"));
  ASSERT_GE(fd, 0);
  GuardedMapping::Error error{};
  int error_number = 0;
  auto guarded = GuardedMapping::Map(fd, kLength, &error, &error_number);  // installs the handler
  ASSERT_TRUE(guarded);
  void* raw = mmap(nullptr, kLength, PROT_READ, MAP_SHARED, fd, 0);  // not registered
  ASSERT_NE(raw, MAP_FAILED);
  ASSERT_EQ(ftruncate(fd, 0), 0);
  EXPECT_EXIT(ReadByte(raw, 4096), ::testing::KilledBySignal(SIGBUS), "");
  munmap(raw, kLength);
  close(fd);
}

}  // namespace
}  // namespace loopwatch::agent
