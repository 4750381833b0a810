// loopwatch shared-memory contract, version 1.3 (1.1 added: busy_ticks is written; 1.2: the in-flight
// slot, capture_request, watchdog_wakeups and the report region are used, see stall_report.h; 1.3:
// sampling of slow callbacks, the arm fields, the current attribution and the attribution table, see
// attribution.h).
//
// This header is the ONE definition of the ring file that the shim (writer, inside every Python
// process) and the agent (reader) share. Both sides include it; nothing else may describe the layout.
// The reasoning behind each choice lives in protocol/README.md; this file only pins the bytes.
//
//  byte 0                                                                      file_size
//  +----------------------+----------------------+-------------------+-------------------+-----------------------+
//  | RingHeader (1024 B)  | name table           | report region     | attribution table | sample ring           |
//  | identity, clock,     | names_capacity bytes | report_capacity B | attribution_cap B | ring_capacity records |
//  | live words, positions| NameRecord...        | (stall reports)   | (v1.3, 32 B slots)| of Sample (32 B each) |
//  +----------------------+----------------------+-------------------+-------------------+-----------------------+
//  ^0                     ^names_offset          ^report_offset      ^attribution_offset ^ring_offset (4096-aligned)
//
//  RingHeader, one 64-byte cache line per row:
//   0 | magic u64 (stored LAST, release) | ver major u16 | ver minor u16 | header_size u32 |
//     | file_size u64 | names_offset u64 | report_offset u64 | ring_offset u64 |
//     | names_capacity u32 | report_capacity u32 | ring_capacity u32 | sample_size u32 |
//  64 | pid i32 | loop_id u32 | process_start_ticks u64 | loop_thread_id i32 | loop_kind u32 |
//     | clock_kind u32 | reserved u32 | created_unix_ns u64 | attribution_offset u64 (v1.3)
//     | attribution_capacity u32 (v1.3) | reserved
// 128 | clock_tick_base u64 | clock_mono_base_ns u64 | clock_ns_per_tick f64 | reserved[5]
// 192 | service name, 128 bytes UTF-8, NUL padded (two lines)
// 320 | WRITER line: dropped u64 | busy_ticks u64 | names_end u64 | names_count u32 | writer_flags u32
//     | heartbeat_ns u64 | watchdog_wakeups u64 | attribution_slots u32 (v1.3) | reserved
// 384 | IN-FLIGHT line (writer): inflight_start u64 | inflight_name u32 | reserved
//     | v1.3, the watchdog: attribution_seq u32 | attributed_state u32 | attributed_start u64
//     | attributed endpoint, handler, site, wchan, samples u32 | reserved | first_sample_mono_ns u64
// 448 | CONTROL line (agent writes, shim reads): control u32 | capture_request u32 (futex word)
//     | v1.3: arm_start_ticks u64 | sample_interval_us u32 | sample_limit u32 | stall_after_us u32 | reserved
// 512 | write_pos u64 (writer, release)  -- own cache line
// 576 | read_pos u64 (reader, release)   -- own cache line
// 640..1023 reserved, zero
//
// Every multi-byte field is little-endian (x86-64 and aarch64 are the supported hosts).
// Zero is never a valid value of magic, a version, an enum or a name id, so a zeroed or torn file
// never decodes as valid.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace loopwatch::protocol {

// "LOOPWTCH" read as a little-endian u64.
inline constexpr uint64_t kMagic = 0x48435457504F4F4CULL;
inline constexpr uint16_t kVersionMajor = 1;  // bump on any incompatible change; readers refuse others
inline constexpr uint16_t kVersionMinor = 3;  // bump on additions readers may ignore

inline constexpr std::size_t kCacheLine = 64;
inline constexpr std::size_t kRingAlignment = 4096;
inline constexpr uint32_t kMinRingCapacity = 64;
inline constexpr uint32_t kMaxRingCapacity = 1u << 24;  // 16 Mi records = 512 MiB: refuse beyond
inline constexpr uint32_t kMaxNamesCapacity = 16u << 20;
inline constexpr uint32_t kMaxReportCapacity = 1u << 20;
inline constexpr uint32_t kMaxAttributionCapacity = 1u << 20;
inline constexpr uint32_t kMaxNameLength = 1024;  // bytes of UTF-8; writers truncate longer names
inline constexpr std::size_t kServiceNameSize = 128;

enum class LoopKind : uint32_t { kAsyncio = 1, kUvloop = 2 };
enum class ClockKind : uint32_t {
  kMonotonicNs = 1,  // ticks are CLOCK_MONOTONIC nanoseconds (clock_ns_per_tick == 1)
  kTsc = 2,          // ticks are rdtsc counts; convert with the calibration fields
};
enum class SampleKind : uint8_t { kReady = 1, kTimer = 2, kIo = 3 };

// Reserved name ids. Real names start at kFirstNameId and are consecutive.
inline constexpr uint32_t kNameIdOther = 1;  // the table was full: "other"
inline constexpr uint32_t kFirstNameId = 2;

// Sample::lag_ticks when the writer could not know the lag (e.g. an I/O handle re-run).
inline constexpr uint64_t kLagUnknown = ~uint64_t{0};
inline constexpr uint32_t kMaxHandles = (1u << 24) - 1;  // Sample::handles saturates here

// Bits of RingHeader::control (written by the agent, read by the shim).
inline constexpr uint32_t kControlValid = 1u << 31;  // agent attached: set when it maps the ring, kept in every value it writes
inline constexpr uint32_t kControlPaused = 1u << 0;  // the agent paused recording; the shim records nothing while set
// Set and cleared by the shim itself (loopwatch.pause()/resume()); the agent preserves it, it only
// sets and clears kControlValid and kControlPaused (fetch_or / fetch_and).
inline constexpr uint32_t kControlPausedByApp = 1u << 1;
inline constexpr uint32_t kControlPausedMask = kControlPaused | kControlPausedByApp;
// Shim-owned too, and ignored by the agent: the loop's next callback has one-off work to do before it
// is timed (start the watchdog thread again after the process forked). It shares the shim's one
// per-callback load of this word with the pause bits, so it costs the fast path nothing.
inline constexpr uint32_t kControlShimWork = 1u << 2;
inline constexpr uint32_t kControlAttentionMask = kControlPausedMask | kControlShimWork;

// Bits of RingHeader::writer_flags (written by the shim).
inline constexpr uint32_t kWriterNamesFull = 1u << 0;  // some names were folded into "other"
inline constexpr uint32_t kWriterClosed = 1u << 1;     // the writer closed the ring cleanly
inline constexpr uint32_t kWriterAttributionFull = 1u << 2;  // v1.3: new keys were folded into the last slot

// One callback run. 32 bytes, written by the loop thread only.
struct Sample {
  uint64_t start_ticks;     // when the callback started
  uint64_t duration_ticks;  // wall time of the callback
  uint64_t lag_ticks;       // start minus due time (timer) or enqueue time (ready); kLagUnknown
  uint32_t name_id;         // a NameRecord id, or kNameIdOther
  uint32_t handles_kind;    // bits 0..23: handles the loop held (saturating); bits 24..31: SampleKind

  static constexpr uint32_t PackHandlesKind(uint32_t handles, SampleKind kind) {
    return (handles > kMaxHandles ? kMaxHandles : handles) | (uint32_t{static_cast<uint8_t>(kind)} << 24);
  }
  constexpr uint32_t handles() const { return handles_kind & kMaxHandles; }
  constexpr uint8_t kind() const { return static_cast<uint8_t>(handles_kind >> 24); }
};
static_assert(sizeof(Sample) == 32);
static_assert(kMagic == (uint64_t{'L'} | uint64_t{'O'} << 8 | uint64_t{'O'} << 16 | uint64_t{'P'} << 24 |
                        uint64_t{'W'} << 32 | uint64_t{'T'} << 40 | uint64_t{'C'} << 48 | uint64_t{'H'} << 56));
static_assert(offsetof(Sample, lag_ticks) == 16);
static_assert(offsetof(Sample, name_id) == 24);
static_assert(offsetof(Sample, handles_kind) == 28);

// Name table record: 8-byte header then `length` bytes of UTF-8, padded to a multiple of 8.
struct NameRecordHeader {
  uint32_t id;
  uint32_t length;
};
static_assert(sizeof(NameRecordHeader) == 8);
constexpr uint64_t NameRecordSize(uint32_t length) {
  return (sizeof(NameRecordHeader) + uint64_t{length} + 7) & ~uint64_t{7};
}

struct alignas(kCacheLine) RingHeader {
  // --- identity: plain fields, immutable once `magic` is published -----------------------------
  std::atomic<uint64_t> magic;  // written last by the creator (release); reader: acquire, 0 = not ready
  uint16_t version_major;
  uint16_t version_minor;
  uint32_t header_size;
  uint64_t file_size;
  uint64_t names_offset;
  uint64_t report_offset;
  uint64_t ring_offset;
  uint32_t names_capacity;   // bytes
  uint32_t report_capacity;  // bytes
  uint32_t ring_capacity;    // records, a power of two
  uint32_t sample_size;      // sizeof(Sample)

  int32_t pid;
  uint32_t loop_id;              // 1-based, per process
  uint64_t process_start_ticks;  // field 22 of /proc/<pid>/stat: tells a reused pid apart
  int32_t loop_thread_id;        // gettid() of the thread that runs the loop
  uint32_t loop_kind;            // LoopKind
  uint32_t clock_kind;           // ClockKind
  uint32_t reserved_identity;
  uint64_t created_unix_ns;
  uint64_t attribution_offset;    // v1.3 (0 in older files): the attribution table, see attribution.h
  uint32_t attribution_capacity;  // v1.3: bytes, a multiple of sizeof(AttributionSlot)
  uint32_t reserved_identity2;
  uint64_t reserved_identity3;

  // ns(CLOCK_MONOTONIC) = clock_mono_base_ns + (ticks - clock_tick_base) * clock_ns_per_tick
  uint64_t clock_tick_base;
  uint64_t clock_mono_base_ns;
  double clock_ns_per_tick;
  uint64_t reserved_clock[5];

  char service[kServiceNameSize];

  // --- writer line: stored by the shim only ------------------------------------------------------
  std::atomic<uint64_t> dropped;     // samples lost to a full ring; relaxed (a statistic)
  std::atomic<uint64_t> busy_ticks;  // v1.1: ticks the loop spent outside its poll; relaxed (a statistic)
  std::atomic<uint64_t> names_end;   // bytes of the name table in use; release after the record
  std::atomic<uint32_t> names_count; // records published; stored before names_end's release
  std::atomic<uint32_t> writer_flags;
  std::atomic<uint64_t> heartbeat_ns;  // CLOCK_MONOTONIC of the last name/close event; relaxed
  std::atomic<uint64_t> watchdog_wakeups;  // v1.2: times the watchdog thread woke for a capture or an arm; relaxed
  std::atomic<uint32_t> attribution_slots; // v1.3: slots of the attribution table in use (watchdog, release)
  uint32_t reserved_writer[3];

  // --- in-flight slot: the callback running now (v1.2; zero = idle; protocol in stall_report.h) -----
  alignas(kCacheLine) std::atomic<uint64_t> inflight_start_ticks;
  std::atomic<uint32_t> inflight_name_id;
  uint32_t reserved_inflight;
  // v1.3, written by the watchdog thread (seqlock attribution_seq, attribution.h): what the samples
  // of the callback that started at attributed_start_ticks say so far.
  std::atomic<uint32_t> attribution_seq;
  uint32_t attributed_state;  // ASCII state letter of the latest sample (R, S, D, ...)
  uint64_t attributed_start_ticks;
  uint32_t attributed_endpoint;  // name ids (0: unknown)
  uint32_t attributed_handler;
  uint32_t attributed_site;
  uint32_t attributed_wchan;
  uint32_t attributed_samples;
  uint32_t reserved_attributed;
  uint64_t first_sample_mono_ns;  // CLOCK_MONOTONIC of that callback's first sample

  // --- control line: stored by the agent, loaded by the shim --------------------------------------
  alignas(kCacheLine) std::atomic<uint32_t> control;  // see kControl*
  std::atomic<uint32_t> capture_request;               // v1.2: futex word, see stall_report.h
  // v1.3: what a capture request asks for (attribution.h); stored before capture_request.
  std::atomic<uint64_t> arm_start_ticks;     // the in-flight start the agent saw slow
  std::atomic<uint32_t> sample_interval_us;  // 0: a v1.2 request (a stall report at once)
  std::atomic<uint32_t> sample_limit;        // samples per callback at most
  std::atomic<uint32_t> stall_after_us;      // write the stall report once the callback is this old
  uint32_t reserved_control[9];

  // --- ring positions: free-running, never wrapped; index = pos & (capacity - 1) ------------------
  alignas(kCacheLine) std::atomic<uint64_t> write_pos;  // shim: release after the record is written
  uint64_t reserved_write[7];
  alignas(kCacheLine) std::atomic<uint64_t> read_pos;   // agent: release after records are copied
  uint64_t reserved_read[7];

  uint64_t reserved_tail[48];
};

static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<uint64_t>) == 8 && sizeof(std::atomic<uint32_t>) == 4);
static_assert(sizeof(RingHeader) == 1024);
static_assert(alignof(RingHeader) == kCacheLine);
static_assert(offsetof(RingHeader, version_major) == 8);
static_assert(offsetof(RingHeader, header_size) == 12);
static_assert(offsetof(RingHeader, file_size) == 16);
static_assert(offsetof(RingHeader, names_offset) == 24);
static_assert(offsetof(RingHeader, ring_offset) == 40);
static_assert(offsetof(RingHeader, names_capacity) == 48);
static_assert(offsetof(RingHeader, sample_size) == 60);
static_assert(offsetof(RingHeader, pid) == 64);
static_assert(offsetof(RingHeader, process_start_ticks) == 72);
static_assert(offsetof(RingHeader, loop_thread_id) == 80);
static_assert(offsetof(RingHeader, clock_kind) == 88);
static_assert(offsetof(RingHeader, created_unix_ns) == 96);
static_assert(offsetof(RingHeader, clock_tick_base) == 128);
static_assert(offsetof(RingHeader, clock_ns_per_tick) == 144);
static_assert(offsetof(RingHeader, service) == 192);
static_assert(offsetof(RingHeader, dropped) == 320);
static_assert(offsetof(RingHeader, names_end) == 336);
static_assert(offsetof(RingHeader, writer_flags) == 348);
static_assert(offsetof(RingHeader, heartbeat_ns) == 352);
static_assert(offsetof(RingHeader, inflight_start_ticks) == 384);
static_assert(offsetof(RingHeader, watchdog_wakeups) == 360);
static_assert(offsetof(RingHeader, inflight_name_id) == 392);
static_assert(offsetof(RingHeader, control) == 448);
static_assert(offsetof(RingHeader, capture_request) == 452);
static_assert(offsetof(RingHeader, attribution_offset) == 104);
static_assert(offsetof(RingHeader, attribution_capacity) == 112);
static_assert(offsetof(RingHeader, attribution_slots) == 368);
static_assert(offsetof(RingHeader, attribution_seq) == 400);
static_assert(offsetof(RingHeader, attributed_start_ticks) == 408);
static_assert(offsetof(RingHeader, attributed_endpoint) == 416);
static_assert(offsetof(RingHeader, attributed_samples) == 432);
static_assert(offsetof(RingHeader, first_sample_mono_ns) == 440);
static_assert(offsetof(RingHeader, arm_start_ticks) == 456);
static_assert(offsetof(RingHeader, sample_interval_us) == 464);
static_assert(offsetof(RingHeader, stall_after_us) == 472);
static_assert(offsetof(RingHeader, write_pos) == 512);
static_assert(offsetof(RingHeader, read_pos) == 576);

// Sizes a writer uses to lay a file out. The reader never trusts these: it re-checks every field.
struct RingGeometry {
  uint32_t ring_capacity;
  uint32_t names_capacity;
  uint32_t report_capacity;
  uint32_t attribution_capacity = 8u << 10;  // v1.3: 256 slots of 32 bytes

  constexpr uint64_t names_offset() const { return sizeof(RingHeader); }
  constexpr uint64_t report_offset() const { return names_offset() + names_capacity; }
  constexpr uint64_t attribution_offset() const {
    return (report_offset() + report_capacity + kCacheLine - 1) / kCacheLine * kCacheLine;
  }
  constexpr uint64_t ring_offset() const {
    return (attribution_offset() + attribution_capacity + kRingAlignment - 1) / kRingAlignment * kRingAlignment;
  }
  constexpr uint64_t file_size() const { return ring_offset() + uint64_t{ring_capacity} * sizeof(Sample); }
};

inline constexpr RingGeometry kDefaultGeometry{
    .ring_capacity = 1u << 17,      // 128 Ki samples = 4 MiB: 130 ms of a 1 M callbacks/s loop
    .names_capacity = 256u << 10,   // ~3000 names of 80 bytes
    .report_capacity = 16u << 10,   // stall reports (v1.2, stall_report.h)
    .attribution_capacity = 8u << 10,  // 256 (endpoint, handler, site, state) keys (v1.3, attribution.h)
};

}  // namespace loopwatch::protocol
