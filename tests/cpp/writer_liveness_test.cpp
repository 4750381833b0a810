// Tests of QueryWriter (agent/src/writer_liveness.h): a lock held by another process means alive;
// when that process exits the kernel drops the lock and the writer reads as gone.
#include "discover/writer_liveness.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "test_ring.h"

namespace loopwatch::agent {
namespace {

using testing::LockHolder;
using testing::TempDir;
using testing::TestRing;

class WriterLivenessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ring_ = std::make_unique<TestRing>(dir_.File("lw-1-1-1.ring"));
    fd_ = open(ring_->path().c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd_, 0);
  }
  void TearDown() override { close(fd_); }

  TempDir dir_;
  std::unique_ptr<TestRing> ring_;
  int fd_ = -1;
};

TEST_F(WriterLivenessTest, ReportsAliveWhileAnotherProcessHoldsTheLock) {
  LockHolder holder(ring_->path());
  ASSERT_TRUE(holder.locked());
  EXPECT_EQ(QueryWriter(fd_), WriterState::kAlive);
}

TEST_F(WriterLivenessTest, ReportsGoneOnceTheWriterProcessExited) {
  LockHolder holder(ring_->path());
  ASSERT_TRUE(holder.locked());
  ASSERT_EQ(QueryWriter(fd_), WriterState::kAlive);
  holder.Release();
  EXPECT_EQ(QueryWriter(fd_), WriterState::kGone);
}

TEST_F(WriterLivenessTest, ReportsGoneForFileNobodyLocked) { EXPECT_EQ(QueryWriter(fd_), WriterState::kGone); }

TEST_F(WriterLivenessTest, CannotSeeALockHeldByItsOwnProcess) {
  // Why the tests fork: POSIX F_GETLK never reports the caller's own locks as conflicts.
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  ASSERT_EQ(fcntl(fd_, F_SETLK, &lock), 0);
  EXPECT_EQ(QueryWriter(fd_), WriterState::kGone);
}

TEST_F(WriterLivenessTest, ReportsUnknownForBadDescriptor) { EXPECT_EQ(QueryWriter(-1), WriterState::kUnknown); }

}  // namespace
}  // namespace loopwatch::agent
