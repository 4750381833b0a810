// Mapping and unmapping under the SIGBUS guard; see guarded_mapping.h.
#include "discover/guarded_mapping.h"

#include <sys/mman.h>

#include <cerrno>

namespace loopwatch::agent {

std::unique_ptr<GuardedMapping> GuardedMapping::Map(int fd, std::size_t length, Error* error, int* error_number) {
  void* data = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) {
    *error = Error::kMapFailed;
    *error_number = errno;
    return nullptr;
  }
  GuardedRange* range = BusErrorGuard::Register(data, length);
  if (range == nullptr) {
    munmap(data, length);
    *error = Error::kNoGuardSlot;
    return nullptr;
  }
  *error = Error::kNone;
  return std::unique_ptr<GuardedMapping>(new GuardedMapping(data, length, range));
}

GuardedMapping::~GuardedMapping() {
  // Unregistered first: once unmapped, the address range may be reused by another mapping whose
  // faults are not ours to hide.
  BusErrorGuard::Unregister(range_);
  munmap(data_, length_);
}

}  // namespace loopwatch::agent
