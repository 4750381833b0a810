// The single-producer single-consumer sample ring inside a ring file.
//
// RingWriter is used by exactly one thread at a time: the thread running the loop (the shim).
// RingReader is used by exactly one thread: the agent's drain thread. Positions are free-running
// 64-bit counters; a record lives at index pos & (capacity - 1). The writer never blocks: when the
// ring is full it counts a drop in the header and returns. Reasoning: protocol/README.md.
#pragma once

#include <cstdint>
#include <cstring>

#include "loopwatch/layout.h"

namespace loopwatch::protocol {

class RingWriter {
 public:
  RingWriter() = default;
  // `header` and `records` point into a file laid out by RingGeometry; capacity is a power of two.
  RingWriter(RingHeader* header, Sample* records, uint32_t capacity)
      : header_(header), records_(records), mask_(capacity - 1) {
    // Only this writer stores write_pos, so a relaxed load of our own last store is exact.
    write_pos_ = header_->write_pos.load(std::memory_order_relaxed);
    // Pairs with the reader's release store of read_pos.
    cached_read_pos_ = header_->read_pos.load(std::memory_order_acquire);
  }

  // Loop thread only. Returns false (and counts a drop) when the ring is full. Never blocks.
  bool TryPush(const Sample& sample) {
    if (write_pos_ - cached_read_pos_ > mask_) {
      // Pairs with the reader's release store of read_pos: the slots it freed are no longer read.
      cached_read_pos_ = header_->read_pos.load(std::memory_order_acquire);
      if (write_pos_ - cached_read_pos_ > mask_) {
        // Single writer: load + store is an exact increment. Relaxed: a statistic, read by the agent.
        header_->dropped.store(header_->dropped.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        return false;
      }
    }
    std::memcpy(&records_[write_pos_ & mask_], &sample, sizeof(Sample));
    ++write_pos_;
    // Pairs with the reader's acquire load of write_pos: the record above is visible before the position.
    header_->write_pos.store(write_pos_, std::memory_order_release);
    return true;
  }

  uint64_t write_pos() const { return write_pos_; }
  explicit operator bool() const { return header_ != nullptr; }

 private:
  RingHeader* header_ = nullptr;
  Sample* records_ = nullptr;
  uint64_t mask_ = 0;
  uint64_t write_pos_ = 0;
  uint64_t cached_read_pos_ = 0;  // private copy of read_pos; refreshed only when the ring looks full
};

enum class DrainStatus : uint8_t {
  kOk = 0,
  kCorrupt,  // write_pos moved backwards or ran ahead by more than the capacity: not a valid writer
};

class RingReader {
 public:
  RingReader() = default;
  RingReader(RingHeader* header, const Sample* records, uint32_t capacity)
      : header_(header), records_(records), capacity_(capacity) {
    // Only the reader stores read_pos; resuming from it lets a restarted agent continue a live ring.
    read_pos_ = header_->read_pos.load(std::memory_order_relaxed);
  }

  // Drain thread only. Copies at most `max_batch` samples to `out` (then to `sink`, one call per
  // sample) and publishes the new read position once for the whole batch.
  template <typename Sink>
  DrainStatus Drain(uint32_t max_batch, Sink&& sink, uint32_t* drained = nullptr) {
    // Pairs with the writer's release store of write_pos: records before it are fully written.
    const uint64_t write_pos = header_->write_pos.load(std::memory_order_acquire);
    if (drained != nullptr) *drained = 0;
    if (write_pos < read_pos_ || write_pos - read_pos_ > capacity_) return DrainStatus::kCorrupt;
    uint64_t available = write_pos - read_pos_;
    const uint32_t n = available < max_batch ? static_cast<uint32_t>(available) : max_batch;
    const uint64_t mask = capacity_ - 1;
    for (uint32_t i = 0; i < n; ++i) {
      Sample s;
      std::memcpy(&s, &records_[(read_pos_ + i) & mask], sizeof(Sample));
      sink(s);
    }
    read_pos_ += n;
    // Pairs with the writer's acquire load of read_pos: it may now overwrite the slots we copied.
    header_->read_pos.store(read_pos_, std::memory_order_release);
    if (drained != nullptr) *drained = n;
    return DrainStatus::kOk;
  }

  uint64_t read_pos() const { return read_pos_; }
  uint64_t Backlog() const { return header_->write_pos.load(std::memory_order_acquire) - read_pos_; }

 private:
  RingHeader* header_ = nullptr;
  const Sample* records_ = nullptr;
  uint64_t capacity_ = 0;
  uint64_t read_pos_ = 0;
};

}  // namespace loopwatch::protocol
