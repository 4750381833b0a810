// The stall-forensics part of the contract (v1.2): the in-flight slot, the capture request, and the
// report region. Both sides include it; layout.h pins where the words live.
//
// In-flight slot (RingHeader line 384, written by the loop thread, read by the agent):
//   before a callback: inflight_name_id = id (relaxed), then inflight_start_ticks = start (release);
//   after it:          inflight_start_ticks = 0 (release). 0 means idle.
//   The agent loads start (acquire), then the name, then start again: equal non-zero starts mean the
//   name belongs to that callback (a new callback always has a different start tick).
//
// Capture request (RingHeader::capture_request, the futex word, written by the agent only):
//   the agent stores request + 1 (release) and FUTEX_WAKEs it. The shim's watchdog thread sleeps in
//   FUTEX_WAIT on the value it last answered, so it never runs while no stall is reported. A wake can
//   be lost (the waiter may not be asleep yet): the waiter re-checks the word, never the wake. The
//   shim also wakes the word itself to stop its watchdog when it closes the ring.
//
// Report region (report_offset, report_capacity bytes, written by the watchdog, read by the agent):
//   | ReportHeader (64 B) | text: UTF-8 JSON, text_length bytes |
//   A seqlock guards it: `seq` is odd while the writer writes. The reader copies the header and text,
//   then re-reads seq; a changed or odd seq means "try again next cycle". The reader treats every
//   field as hostile: text_length is checked against the region, the text is parsed, not trusted.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "loopwatch/layout.h"

namespace loopwatch::protocol {

// What the watchdog knew when it wrote the report.
enum class ReportStage : uint32_t {
  kThreadStateOnly = 1,  // written at once: the loop thread's OS state; the stack needs the GIL
  kComplete = 2,         // the stack was captured under the GIL
  kFailed = 3,           // no stack (interpreter finalizing, thread gone, ...); see the text
};

struct ReportHeader {
  std::atomic<uint32_t> seq;      // seqlock: odd while writing
  uint32_t request;               // the capture_request value this report answers
  uint64_t callback_start_ticks;  // the in-flight callback the report is about (0: none was running)
  uint32_t name_id;               // its in-flight name id
  uint32_t text_length;           // bytes of JSON after the header
  uint64_t captured_unix_ns;      // CLOCK_REALTIME when the stack (or state) was taken
  uint64_t gil_wait_ns;           // how long the watchdog waited for the GIL (kComplete only)
  ReportStage stage;
  uint32_t reserved[5];
};
static_assert(sizeof(ReportHeader) == 64);
static_assert(offsetof(ReportHeader, request) == 4);
static_assert(offsetof(ReportHeader, callback_start_ticks) == 8);
static_assert(offsetof(ReportHeader, text_length) == 20);
static_assert(offsetof(ReportHeader, stage) == 40);

// The report region must hold at least a header and some text.
inline constexpr uint32_t kMinReportCapacity = 1024;

// A report's fields outside shared memory.
struct ReportFields {
  uint32_t request = 0;
  uint64_t callback_start_ticks = 0;
  uint32_t name_id = 0;
  uint32_t text_length = 0;  // set by ReadReport; WriteReport takes the text's length
  uint64_t captured_unix_ns = 0;
  uint64_t gil_wait_ns = 0;
  ReportStage stage = ReportStage::kFailed;
};

// Reads the in-flight slot. Returns false when idle or when the slot changed while it was read.
inline bool ReadInflight(const RingHeader& header, uint64_t* start_ticks, uint32_t* name_id) {
  const uint64_t start = header.inflight_start_ticks.load(std::memory_order_acquire);
  if (start == 0) return false;
  const uint32_t name = header.inflight_name_id.load(std::memory_order_relaxed);
  // Acquire pairs with the writer's release of the next start: if it is unchanged, so is the name.
  std::atomic_thread_fence(std::memory_order_acquire);
  if (header.inflight_start_ticks.load(std::memory_order_relaxed) != start) return false;
  *start_ticks = start;
  *name_id = name;
  return true;
}

// Writer side of the report seqlock (the watchdog thread; one writer per ring).
inline void WriteReport(unsigned char* region, uint32_t capacity, const ReportFields& fields, const std::string& text) {
  auto* header = reinterpret_cast<ReportHeader*>(region);
  const uint32_t seq = header->seq.load(std::memory_order_relaxed);
  header->seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);  // the odd seq is visible before any field changes
  const uint32_t room = capacity - static_cast<uint32_t>(sizeof(ReportHeader));
  const uint32_t length = text.size() < room ? static_cast<uint32_t>(text.size()) : room;
  header->request = fields.request;
  header->callback_start_ticks = fields.callback_start_ticks;
  header->name_id = fields.name_id;
  header->text_length = length;
  header->captured_unix_ns = fields.captured_unix_ns;
  header->gil_wait_ns = fields.gil_wait_ns;
  header->stage = fields.stage;
  std::memcpy(region + sizeof(ReportHeader), text.data(), length);
  header->seq.store(seq + 2, std::memory_order_release);  // publishes the fields and the text
}

// Reader side: copies a stable report out of shared memory. Returns false if the writer was busy or
// the region holds no report (seq 0) or an impossible length.
inline bool ReadReport(const unsigned char* region, uint32_t capacity, ReportFields* fields, std::string* text) {
  if (capacity < kMinReportCapacity) return false;
  const auto* header = reinterpret_cast<const ReportHeader*>(region);
  const uint32_t before = header->seq.load(std::memory_order_acquire);
  if (before == 0 || (before & 1) != 0) return false;
  fields->request = header->request;
  fields->callback_start_ticks = header->callback_start_ticks;
  fields->name_id = header->name_id;
  fields->text_length = header->text_length;
  fields->captured_unix_ns = header->captured_unix_ns;
  fields->gil_wait_ns = header->gil_wait_ns;
  fields->stage = header->stage;
  if (fields->text_length > capacity - sizeof(ReportHeader)) return false;
  text->assign(reinterpret_cast<const char*>(region + sizeof(ReportHeader)), fields->text_length);
  std::atomic_thread_fence(std::memory_order_acquire);  // the copies complete before seq is re-read
  return header->seq.load(std::memory_order_relaxed) == before;
}

}  // namespace loopwatch::protocol
