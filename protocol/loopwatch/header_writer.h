// How a writer lays out a new ring file's header: every identity field from the geometry and the
// writer's identity, then the magic, stored last with a release store (a reader that sees the magic
// sees everything else). The shim, the test fixtures and the benchmark writer all create rings
// through this one function, so none of them can drift from the contract.
#pragma once

#include <cstdint>
#include <cstring>
#include <new>
#include <string_view>

#include "loopwatch/layout.h"

namespace loopwatch::protocol {

struct WriterIdentity {
  int32_t pid = 0;
  uint32_t loop_id = 0;
  uint64_t process_start_ticks = 0;
  int32_t loop_thread_id = 0;
  LoopKind loop_kind = LoopKind::kAsyncio;
  ClockKind clock_kind = ClockKind::kMonotonicNs;
  uint64_t clock_tick_base = 0;
  uint64_t clock_mono_base_ns = 0;
  double clock_ns_per_tick = 1.0;
  uint64_t created_unix_ns = 0;
  uint64_t heartbeat_ns = 0;
  std::string_view service;  // cut to at most kServiceNameSize - 1 bytes, at a UTF-8 character boundary
};

// `memory` is the zero-filled start of a new file of `geometry.file_size()` bytes. With publish=false
// the magic stays 0 (the file reads as "not ready", for tests).
inline RingHeader* WriteRingHeader(void* memory, const RingGeometry& geometry, const WriterIdentity& id,
                                   bool publish = true) {
  auto* h = new (memory) RingHeader;  // the memory is zeroed: placement-new only starts the lifetimes
  h->version_major = kVersionMajor;
  h->version_minor = kVersionMinor;
  h->header_size = sizeof(RingHeader);
  h->file_size = geometry.file_size();
  h->names_offset = geometry.names_offset();
  h->report_offset = geometry.report_offset();
  h->ring_offset = geometry.ring_offset();
  h->names_capacity = geometry.names_capacity;
  h->report_capacity = geometry.report_capacity;
  h->attribution_offset = geometry.attribution_offset();
  h->attribution_capacity = geometry.attribution_capacity;
  h->ring_capacity = geometry.ring_capacity;
  h->sample_size = sizeof(Sample);
  h->pid = id.pid;
  h->loop_id = id.loop_id;
  h->process_start_ticks = id.process_start_ticks;
  h->loop_thread_id = id.loop_thread_id;
  h->loop_kind = static_cast<uint32_t>(id.loop_kind);
  h->clock_kind = static_cast<uint32_t>(id.clock_kind);
  h->created_unix_ns = id.created_unix_ns;
  h->clock_tick_base = id.clock_tick_base;
  h->clock_mono_base_ns = id.clock_mono_base_ns;
  h->clock_ns_per_tick = id.clock_ns_per_tick;
  std::size_t service_length = id.service.size() < kServiceNameSize ? id.service.size() : kServiceNameSize - 1;
  if (service_length < id.service.size()) {
    // Never cut a character in two: back off over continuation bytes (10xxxxxx) to a lead byte.
    while (service_length > 0 && (static_cast<unsigned char>(id.service[service_length]) & 0xC0) == 0x80) --service_length;
  }
  std::memcpy(h->service, id.service.data(), service_length);
  h->heartbeat_ns.store(id.heartbeat_ns, std::memory_order_relaxed);
  // Pairs with the reader's acquire load of magic in CheckHeader: all fields above are visible first.
  if (publish) h->magic.store(kMagic, std::memory_order_release);
  return h;
}

}  // namespace loopwatch::protocol
