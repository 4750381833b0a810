// The append-only table of callback names inside a ring file.
//
// The shim appends a record the first time it sees a callback (never on the per-callback path after
// that); the agent reads new records incrementally. Ids are consecutive from kFirstNameId, so a
// reader can check that it missed nothing. A full table answers kNameIdOther and sets a writer flag.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

#include "loopwatch/layout.h"

namespace loopwatch::protocol {

class NameTableWriter {
 public:
  NameTableWriter() = default;
  NameTableWriter(RingHeader* header, unsigned char* table, uint32_t capacity)
      : header_(header), table_(table), capacity_(capacity) {
    end_ = header_->names_end.load(std::memory_order_relaxed);
    next_id_ = kFirstNameId + header_->names_count.load(std::memory_order_relaxed);
  }

  // Writer thread only. Returns the new record's id, or kNameIdOther when the table is full.
  // Names longer than kMaxNameLength are cut at a UTF-8 character boundary.
  uint32_t Append(std::string_view name) {
    if (name.size() > kMaxNameLength) {
      std::size_t cut = kMaxNameLength;
      while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xC0) == 0x80) --cut;
      name = name.substr(0, cut);
    }
    const auto length = static_cast<uint32_t>(name.size());
    const uint64_t size = NameRecordSize(length);
    if (end_ + size > capacity_) {
      header_->writer_flags.fetch_or(kWriterNamesFull, std::memory_order_relaxed);
      return kNameIdOther;
    }
    const NameRecordHeader record{next_id_, length};
    std::memcpy(table_ + end_, &record, sizeof(record));
    std::memcpy(table_ + end_ + sizeof(record), name.data(), length);
    std::memset(table_ + end_ + sizeof(record) + length, 0, size - sizeof(record) - length);
    end_ += size;
    header_->names_count.store(next_id_ - kFirstNameId + 1, std::memory_order_relaxed);
    // Pairs with the reader's acquire load of names_end: the record bytes are visible first.
    header_->names_end.store(end_, std::memory_order_release);
    return next_id_++;
  }

 private:
  RingHeader* header_ = nullptr;
  unsigned char* table_ = nullptr;
  uint64_t capacity_ = 0;
  uint64_t end_ = 0;
  uint32_t next_id_ = kFirstNameId;
};

enum class NameTableStatus : uint8_t {
  kOk = 0,
  kCorrupt,  // a record that does not fit, an impossible length, or an id out of sequence
};

class NameTableReader {
 public:
  NameTableReader() = default;
  NameTableReader(const RingHeader* header, const unsigned char* table, uint32_t capacity)
      : header_(header), table_(table), capacity_(capacity) {}

  // Reader thread only. Calls sink(id, name) for every record published since the last call.
  // Checks every length against the published end and the capacity before reading the bytes.
  template <typename Sink>
  NameTableStatus Poll(Sink&& sink) {
    if (corrupt_) return NameTableStatus::kCorrupt;
    // Pairs with the writer's release store of names_end.
    const uint64_t end = header_->names_end.load(std::memory_order_acquire);
    if (end > capacity_ || end < cursor_) return Fail();
    while (cursor_ < end) {
      if (end - cursor_ < sizeof(NameRecordHeader)) return Fail();
      NameRecordHeader record;
      std::memcpy(&record, table_ + cursor_, sizeof(record));
      if (record.id != next_id_ || record.length > kMaxNameLength) return Fail();
      const uint64_t size = NameRecordSize(record.length);
      if (size > end - cursor_) return Fail();
      sink(record.id, std::string_view(reinterpret_cast<const char*>(table_ + cursor_ + sizeof(record)), record.length));
      cursor_ += size;
      ++next_id_;
    }
    return NameTableStatus::kOk;
  }

  uint32_t next_id() const { return next_id_; }

 private:
  NameTableStatus Fail() {
    corrupt_ = true;
    return NameTableStatus::kCorrupt;
  }

  const RingHeader* header_ = nullptr;
  const unsigned char* table_ = nullptr;
  uint64_t capacity_ = 0;
  uint64_t cursor_ = 0;
  uint32_t next_id_ = kFirstNameId;
  bool corrupt_ = false;
};

}  // namespace loopwatch::protocol
