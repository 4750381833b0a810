// When each ready asyncio handle was enqueued, keyed by the handle's address, for the ready lag
// (run - enqueue) of Handle._run. A direct-mapped table: a stamp costs one store, a lookup one load
// and compare. A collision (more than kSlots handles pending at once, or a hash clash) loses a stamp
// and the sample says "lag unknown". The slot stores the address it belongs to and a lookup clears it
// (a handle run twice, like a selector's reader, gets a new stamp from _add_callback each time); a
// stale stamp could only be read by a handle that reached _ready without _call_soon/_add_callback at
// the address of a cancelled one, which asyncio itself never does. Process-wide and GIL-protected.
#pragma once

#include <cstdint>

#include "loopwatch/layout.h"

namespace loopwatch::shim {

struct EnqueueStamp {
  uint64_t ticks = 0;  // 0 = no stamp
  protocol::SampleKind kind = protocol::SampleKind::kReady;
};

namespace detail {
inline constexpr unsigned kStampBits = 12;
struct StampSlot {
  const void* handle;
  uint64_t ticks;
  protocol::SampleKind kind;
};
inline StampSlot g_stamps[1u << kStampBits];
inline unsigned StampIndex(const void* handle) {
  // Fibonacci hashing of the address (objects are 16-byte aligned, so low bits carry nothing).
  return static_cast<unsigned>((reinterpret_cast<uintptr_t>(handle) * 0x9E3779B97F4A7C15ULL) >> (64 - kStampBits));
}
}  // namespace detail

inline void PutEnqueueStamp(const void* handle, uint64_t ticks, protocol::SampleKind kind) {
  detail::g_stamps[detail::StampIndex(handle)] = {handle, ticks, kind};
}

inline EnqueueStamp TakeEnqueueStamp(const void* handle) {
  detail::StampSlot& slot = detail::g_stamps[detail::StampIndex(handle)];
  if (slot.handle != handle) return {};
  slot.handle = nullptr;
  return {slot.ticks, slot.kind};
}

}  // namespace loopwatch::shim
