// A whole ring file mapped MAP_SHARED read-write, registered with the BusErrorGuard for as long as
// it is mapped: if the file shrinks under the mapping, reading or writing the lost pages yields
// zeros and sets faulted() instead of killing the agent with SIGBUS.
#pragma once

#include <cstddef>
#include <memory>

#include "discover/bus_error_guard.h"

namespace loopwatch::agent {

// Not thread safe (one owner), but faulted() may be read by any thread.
class GuardedMapping {
 public:
  enum class Error { kNone, kMapFailed, kNoGuardSlot };

  // Maps the first `length` bytes of `fd`. On failure returns nullptr, sets *error, and for
  // kMapFailed also *error_number.
  static std::unique_ptr<GuardedMapping> Map(int fd, std::size_t length, Error* error, int* error_number);

  ~GuardedMapping();  // unregisters, then unmaps
  GuardedMapping(const GuardedMapping&) = delete;
  GuardedMapping& operator=(const GuardedMapping&) = delete;

  void* data() const { return data_; }
  std::size_t length() const { return length_; }
  // True once a page of this mapping faulted because the file no longer covered it.
  bool faulted() const { return range_->faulted.load(std::memory_order_acquire); }

 private:
  GuardedMapping(void* data, std::size_t length, GuardedRange* range) : data_(data), length_(length), range_(range) {}

  void* const data_;
  const std::size_t length_;
  GuardedRange* const range_;
};

}  // namespace loopwatch::agent
