// Validates a ring file's header before anything else in it is read. The agent calls this on every
// file it considers mapping; the fuzzer and the unit tests call it on hostile bytes. It reads the
// header once into a private copy (the writer may still be changing the live words) and checks every
// size and offset against the real file length, so no later access can leave the mapping.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

#include "loopwatch/layout.h"

namespace loopwatch::protocol {

enum class HeaderError : uint8_t {
  kOk = 0,
  kTooSmall,          // shorter than a RingHeader
  kNotReady,          // magic still 0: the writer has not published the file yet
  kBadMagic,          // not a loopwatch ring
  kVersionMismatch,   // a major version this reader does not speak
  kBadHeaderSize,     // header_size smaller than this version's header or beyond the file
  kBadSampleSize,     // sample_size is not sizeof(Sample)
  kBadGeometry,       // capacities or offsets impossible (overlap, not a power of two, misaligned)
  kFileSizeMismatch,  // file_size in the header differs from the real length of the file
  kBadEnum,           // loop_kind or clock_kind is not a known value
  kBadClock,          // clock calibration is not a finite positive rate
};

// Stable snake_case names: used as the `reason` label of loopwatch_agent_rings_refused_total.
constexpr std::string_view HeaderErrorName(HeaderError e) {
  switch (e) {
    case HeaderError::kOk: return "ok";
    case HeaderError::kTooSmall: return "too_small";
    case HeaderError::kNotReady: return "not_ready";
    case HeaderError::kBadMagic: return "bad_magic";
    case HeaderError::kVersionMismatch: return "version_mismatch";
    case HeaderError::kBadHeaderSize: return "bad_header_size";
    case HeaderError::kBadSampleSize: return "bad_sample_size";
    case HeaderError::kBadGeometry: return "bad_geometry";
    case HeaderError::kFileSizeMismatch: return "file_size_mismatch";
    case HeaderError::kBadEnum: return "bad_enum";
    case HeaderError::kBadClock: return "bad_clock";
  }
  return "unknown";
}

// The immutable part of a header, copied out of shared memory once it passed CheckHeader.
struct HeaderSnapshot {
  uint16_t version_major = 0;
  uint16_t version_minor = 0;
  uint64_t file_size = 0;
  uint64_t names_offset = 0;
  uint64_t report_offset = 0;
  uint64_t ring_offset = 0;
  uint32_t names_capacity = 0;
  uint32_t report_capacity = 0;
  uint32_t ring_capacity = 0;
  uint64_t attribution_offset = 0;    // v1.3; 0 (no table) in older files
  uint32_t attribution_capacity = 0;  // v1.3; 0 in older files
  int32_t pid = 0;
  uint32_t loop_id = 0;
  uint64_t process_start_ticks = 0;
  int32_t loop_thread_id = 0;
  LoopKind loop_kind = LoopKind::kAsyncio;
  ClockKind clock_kind = ClockKind::kMonotonicNs;
  uint64_t created_unix_ns = 0;
  uint64_t clock_tick_base = 0;
  uint64_t clock_mono_base_ns = 0;
  double clock_ns_per_tick = 1.0;
  char service[kServiceNameSize + 1] = {};  // always NUL-terminated

  std::string_view service_name() const { return {service, strnlen(service, kServiceNameSize)}; }
  double TicksToSeconds(uint64_t ticks) const { return static_cast<double>(ticks) * clock_ns_per_tick * 1e-9; }
};

struct HeaderCheck {
  HeaderError error = HeaderError::kOk;
  HeaderSnapshot header;
  bool ok() const { return error == HeaderError::kOk; }
};

// `data` points at the first byte of a mapping of `file_length` bytes (any alignment is tolerated
// for hostile inputs: fields are memcpy'd). Never reads outside [data, data + file_length).
inline HeaderCheck CheckHeader(const void* data, uint64_t file_length) {
  HeaderCheck out;
  if (data == nullptr || file_length < sizeof(RingHeader)) {
    out.error = HeaderError::kTooSmall;
    return out;
  }
  const auto* bytes = static_cast<const unsigned char*>(data);
  auto field = [bytes](auto& dst, std::size_t offset) { std::memcpy(&dst, bytes + offset, sizeof(dst)); };

  uint64_t magic = 0;
  if (reinterpret_cast<uintptr_t>(bytes) % alignof(RingHeader) == 0) {
    // Pairs with the writer's release store of magic: every identity field below is visible.
    magic = reinterpret_cast<const RingHeader*>(bytes)->magic.load(std::memory_order_acquire);
  } else {
    field(magic, offsetof(RingHeader, magic));
    std::atomic_thread_fence(std::memory_order_acquire);
  }
  if (magic == 0) return {HeaderError::kNotReady, {}};
  if (magic != kMagic) return {HeaderError::kBadMagic, {}};

  HeaderSnapshot& h = out.header;
  uint32_t header_size = 0, sample_size = 0, loop_kind = 0, clock_kind = 0;
  field(h.version_major, offsetof(RingHeader, version_major));
  field(h.version_minor, offsetof(RingHeader, version_minor));
  field(header_size, offsetof(RingHeader, header_size));
  field(h.file_size, offsetof(RingHeader, file_size));
  field(h.names_offset, offsetof(RingHeader, names_offset));
  field(h.report_offset, offsetof(RingHeader, report_offset));
  field(h.ring_offset, offsetof(RingHeader, ring_offset));
  field(h.names_capacity, offsetof(RingHeader, names_capacity));
  field(h.report_capacity, offsetof(RingHeader, report_capacity));
  field(h.ring_capacity, offsetof(RingHeader, ring_capacity));
  if (h.version_minor >= 3) {  // older writers left these bytes reserved (zero)
    field(h.attribution_offset, offsetof(RingHeader, attribution_offset));
    field(h.attribution_capacity, offsetof(RingHeader, attribution_capacity));
  }
  field(sample_size, offsetof(RingHeader, sample_size));
  field(h.pid, offsetof(RingHeader, pid));
  field(h.loop_id, offsetof(RingHeader, loop_id));
  field(h.process_start_ticks, offsetof(RingHeader, process_start_ticks));
  field(h.loop_thread_id, offsetof(RingHeader, loop_thread_id));
  field(loop_kind, offsetof(RingHeader, loop_kind));
  field(clock_kind, offsetof(RingHeader, clock_kind));
  field(h.created_unix_ns, offsetof(RingHeader, created_unix_ns));
  field(h.clock_tick_base, offsetof(RingHeader, clock_tick_base));
  field(h.clock_mono_base_ns, offsetof(RingHeader, clock_mono_base_ns));
  field(h.clock_ns_per_tick, offsetof(RingHeader, clock_ns_per_tick));
  std::memcpy(h.service, bytes + offsetof(RingHeader, service), kServiceNameSize);

  auto fail = [&out](HeaderError e) {
    out.error = e;
    return out;
  };
  if (h.version_major != kVersionMajor) return fail(HeaderError::kVersionMismatch);
  if (header_size < sizeof(RingHeader) || header_size > file_length) return fail(HeaderError::kBadHeaderSize);
  if (sample_size != sizeof(Sample)) return fail(HeaderError::kBadSampleSize);
  if (h.file_size != file_length) return fail(HeaderError::kFileSizeMismatch);

  const bool power_of_two = h.ring_capacity != 0 && (h.ring_capacity & (h.ring_capacity - 1)) == 0;
  if (!power_of_two || h.ring_capacity < kMinRingCapacity || h.ring_capacity > kMaxRingCapacity ||
      h.names_capacity > kMaxNamesCapacity || h.names_capacity % 8 != 0 ||
      h.report_capacity > kMaxReportCapacity) {
    return fail(HeaderError::kBadGeometry);
  }
  // Sections must follow each other without overlap and end inside the file. All operands are
  // bounded above (offsets by file_length checks before use, capacities by the limits), so no sum
  // below can overflow 64 bits.
  const uint64_t ring_bytes = uint64_t{h.ring_capacity} * sizeof(Sample);
  if (h.names_offset < header_size || h.names_offset > file_length || h.names_offset % 8 != 0 ||
      h.report_offset < h.names_offset + h.names_capacity || h.report_offset > file_length ||
      // The report region starts with a ReportHeader (stall_report.h: 8-byte aligned, an atomic seq):
      // a misaligned atomic is undefined behaviour and can fault on aarch64.
      h.report_offset % 8 != 0 ||
      h.ring_offset < h.report_offset + h.report_capacity || h.ring_offset % alignof(Sample) != 0 ||
      h.ring_offset > file_length || ring_bytes > file_length - h.ring_offset) {
    return fail(HeaderError::kBadGeometry);
  }
  // v1.3: the attribution table lies between the report region and the ring, 8-byte aligned (its
  // slots hold atomics) and made of whole slots. A capacity of 0 means "no table".
  if (h.attribution_capacity != 0 &&
      (h.attribution_capacity > kMaxAttributionCapacity || h.attribution_capacity % 32 != 0 ||
       h.attribution_offset % 8 != 0 || h.attribution_offset < h.report_offset + h.report_capacity ||
       h.attribution_offset > h.ring_offset || h.attribution_capacity > h.ring_offset - h.attribution_offset)) {
    return fail(HeaderError::kBadGeometry);
  }
  if (loop_kind != static_cast<uint32_t>(LoopKind::kAsyncio) && loop_kind != static_cast<uint32_t>(LoopKind::kUvloop)) {
    return fail(HeaderError::kBadEnum);
  }
  if (clock_kind != static_cast<uint32_t>(ClockKind::kMonotonicNs) && clock_kind != static_cast<uint32_t>(ClockKind::kTsc)) {
    return fail(HeaderError::kBadEnum);
  }
  h.loop_kind = static_cast<LoopKind>(loop_kind);
  h.clock_kind = static_cast<ClockKind>(clock_kind);
  // NaN fails both comparisons; 1e6 ns per tick (a 1 kHz clock) is the coarsest we accept.
  if (!(h.clock_ns_per_tick > 0.0 && h.clock_ns_per_tick < 1e6)) return fail(HeaderError::kBadClock);
  return out;
}

}  // namespace loopwatch::protocol
