// Attribution of slow callbacks (protocol v1.3): the agent arms the shim's watchdog thread for a
// callback that has run past the arm threshold; the watchdog samples the loop thread's Python stack
// every sample interval until the callback ends (at most sample_limit samples), derives the
// endpoint, handler and site of each sample and adds the time since the previous sample to a slot of
// the attribution table. Both sides include this header; layout.h pins where the words live.
//
// Arm (control line, written by the agent only):
//   the agent stores arm_start_ticks, sample_interval_us, sample_limit and stall_after_us (relaxed),
//   then capture_request + 1 (release) and FUTEX_WAKEs it (the v1.2 doorbell, stall_report.h). The
//   watchdog loads capture_request (acquire), then the arm fields, then capture_request again: a
//   changed value means a newer request overwrote the fields, and it starts over with that one.
//   sample_interval_us == 0 is a v1.2 request (an agent that predates sampling): a stall report at
//   once. Otherwise the stall report (stall_report.h, `request` = this request) is written by the
//   first sample taken once the callback is stall_after_us old, if it runs that long.
//   An agent arms only rings whose writer says version_minor >= 3.
//
// Current attribution (in-flight line, written by the watchdog only; seqlock attribution_seq):
//   after every sample the watchdog publishes the callback's start ticks with the endpoint,
//   handler, site and wchan name ids and the state letter of that sample, the samples taken so far
//   and the CLOCK_MONOTONIC time of the first. The agent names the in-flight callback with it and
//   joins it to the callback's sample by its start ticks. The fields stay after the callback ends.
//
// Attribution table (attribution_offset, attribution_capacity bytes, the watchdog writes, the agent
// reads): slots of 32 bytes. The watchdog fills a new slot's key, then stores attribution_slots + 1
// (release); afterwards it only adds to the slot's counters (relaxed: monotonic statistics the agent
// mirrors by deltas). Keys are never changed or reused. When only one slot is left, every new key
// goes to that last slot, keyed kNameIdOther everywhere (writer_flags kWriterAttributionFull).
#pragma once

#include <atomic>
#include <compare>
#include <cstddef>
#include <cstdint>

#include "loopwatch/layout.h"

namespace loopwatch::protocol {

struct ArmRequest {
  uint64_t start_ticks = 0;
  uint32_t sample_interval_us = 0;  // 0: a v1.2 request
  uint32_t sample_limit = 0;
  uint32_t stall_after_us = 0;
};

// Agent side: the fields, then the caller bumps capture_request (release) and wakes it.
inline void StoreArm(RingHeader& header, const ArmRequest& arm) {
  header.arm_start_ticks.store(arm.start_ticks, std::memory_order_relaxed);
  header.sample_interval_us.store(arm.sample_interval_us, std::memory_order_relaxed);
  header.sample_limit.store(arm.sample_limit, std::memory_order_relaxed);
  header.stall_after_us.store(arm.stall_after_us, std::memory_order_relaxed);
}

// Shim side, after an acquire load of capture_request returned `request`. False when a newer request
// arrived meanwhile (the fields may mix two requests): load the request again.
inline bool LoadArm(const RingHeader& header, uint32_t request, ArmRequest* arm) {
  arm->start_ticks = header.arm_start_ticks.load(std::memory_order_relaxed);
  arm->sample_interval_us = header.sample_interval_us.load(std::memory_order_relaxed);
  arm->sample_limit = header.sample_limit.load(std::memory_order_relaxed);
  arm->stall_after_us = header.stall_after_us.load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);  // the loads above complete before the re-check
  return header.capture_request.load(std::memory_order_relaxed) == request;
}

// What the samples of one callback said so far.
struct Attribution {
  uint64_t start_ticks = 0;  // the callback's in-flight start (0: none yet)
  uint32_t endpoint = 0;     // name ids; 0 = unknown
  uint32_t handler = 0;
  uint32_t site = 0;
  uint32_t wchan = 0;
  uint32_t samples = 0;
  char state = 0;  // the latest sample's state letter (R running, S sleeping, D disk, ...)
  uint64_t first_sample_mono_ns = 0;
};

// Watchdog side (one writer per ring).
inline void WriteAttribution(RingHeader& header, const Attribution& a) {
  const uint32_t seq = header.attribution_seq.load(std::memory_order_relaxed);
  header.attribution_seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);  // the odd seq is visible before any field changes
  header.attributed_start_ticks = a.start_ticks;
  header.attributed_endpoint = a.endpoint;
  header.attributed_handler = a.handler;
  header.attributed_site = a.site;
  header.attributed_wchan = a.wchan;
  header.attributed_samples = a.samples;
  header.attributed_state = static_cast<unsigned char>(a.state);
  header.first_sample_mono_ns = a.first_sample_mono_ns;
  header.attribution_seq.store(seq + 2, std::memory_order_release);  // publishes the fields
}

// Agent side. False while the watchdog writes (try again next cycle) or before the first sample.
// The plain fields are read racily on purpose (a seqlock); only a stable seq makes them valid.
inline bool ReadAttribution(const RingHeader& header, Attribution* a) {
  const uint32_t before = header.attribution_seq.load(std::memory_order_acquire);
  if (before == 0 || (before & 1) != 0) return false;
  const volatile RingHeader& h = header;  // racy reads the compiler must not merge or move
  a->start_ticks = h.attributed_start_ticks;
  a->endpoint = h.attributed_endpoint;
  a->handler = h.attributed_handler;
  a->site = h.attributed_site;
  a->wchan = h.attributed_wchan;
  a->samples = h.attributed_samples;
  a->state = static_cast<char>(h.attributed_state & 0x7F);
  a->first_sample_mono_ns = h.first_sample_mono_ns;
  std::atomic_thread_fence(std::memory_order_acquire);  // the copies complete before seq is re-read
  return header.attribution_seq.load(std::memory_order_relaxed) == before;
}

// One key of the table and the time charged to it.
struct AttributionSlot {
  uint32_t endpoint;  // name ids (kNameIdOther in the overflow slot; 0 = unknown)
  uint32_t handler;
  uint32_t site;
  uint32_t state;  // ASCII state letter
  std::atomic<uint64_t> blocked_ns;  // sampled wall time charged to the key
  std::atomic<uint64_t> samples;
};
static_assert(sizeof(AttributionSlot) == 32);
static_assert(offsetof(AttributionSlot, blocked_ns) == 16);

struct AttributionKey {
  uint32_t endpoint = 0;
  uint32_t handler = 0;
  uint32_t site = 0;
  uint32_t state = 0;
  auto operator<=>(const AttributionKey&) const = default;
};

// Watchdog thread only. The caller keeps its own key -> slot map (Append is called once per key).
class AttributionTableWriter {
 public:
  AttributionTableWriter() = default;
  AttributionTableWriter(RingHeader* header, unsigned char* table, uint32_t capacity)
      : header_(header),
        slots_(reinterpret_cast<AttributionSlot*>(table)),
        capacity_(capacity / sizeof(AttributionSlot)),
        used_(header->attribution_slots.load(std::memory_order_relaxed)) {}

  explicit operator bool() const { return capacity_ >= 2; }

  // The slot for a new key: the next free one, or the overflow slot (the last) once one is left.
  uint32_t Append(const AttributionKey& key) {
    if (used_ + 1 >= capacity_) {
      header_->writer_flags.fetch_or(kWriterAttributionFull, std::memory_order_relaxed);
      if (used_ + 1 == capacity_) Publish({kNameIdOther, kNameIdOther, kNameIdOther, kNameIdOther});
      return capacity_ - 1;
    }
    Publish(key);
    return used_ - 1;
  }

  // Single writer: load + store is an exact increment.
  void Add(uint32_t slot, uint64_t ns) {
    AttributionSlot& s = slots_[slot];
    s.blocked_ns.store(s.blocked_ns.load(std::memory_order_relaxed) + ns, std::memory_order_relaxed);
    s.samples.store(s.samples.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

 private:
  void Publish(const AttributionKey& key) {
    AttributionSlot& s = slots_[used_];
    s.endpoint = key.endpoint;
    s.handler = key.handler;
    s.site = key.site;
    s.state = key.state;
    ++used_;
    // Pairs with the reader's acquire load: the key is visible before the slot is counted.
    header_->attribution_slots.store(used_, std::memory_order_release);
  }

  RingHeader* header_ = nullptr;
  AttributionSlot* slots_ = nullptr;
  uint32_t capacity_ = 0;
  uint32_t used_ = 0;
};

// Agent side: slots published so far (never more than the capacity, whatever the word says).
inline uint32_t PublishedSlots(const RingHeader& header, uint32_t capacity_bytes) {
  const uint32_t used = header.attribution_slots.load(std::memory_order_acquire);
  const uint32_t capacity = capacity_bytes / static_cast<uint32_t>(sizeof(AttributionSlot));
  return used < capacity ? used : capacity;
}

}  // namespace loopwatch::protocol
