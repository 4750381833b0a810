// Tests of the append-only name table (protocol/loopwatch/name_table.h): incremental reads, only
// published records, a full table, UTF-8 truncation and refusal of corrupt tables.
#include "loopwatch/name_table.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "test_ring.h"

namespace loopwatch::protocol {
namespace {

using testing::RingImage;
using testing::TestRingOptions;

class NameTableTest : public ::testing::Test {
 protected:
  explicit NameTableTest(uint32_t capacity = 4096) : image_(Options(capacity)) {}

  static TestRingOptions Options(uint32_t capacity) {
    TestRingOptions options;
    options.geometry = {.ring_capacity = 64, .names_capacity = capacity, .report_capacity = 0};
    return options;
  }
  NameTableWriter Writer() { return NameTableWriter(image_.header(), image_.names(), image_.header()->names_capacity); }
  NameTableReader Reader() { return NameTableReader(image_.header(), image_.names(), image_.header()->names_capacity); }

  static std::vector<std::pair<uint32_t, std::string>> PollAll(NameTableReader& reader, NameTableStatus* status) {
    std::vector<std::pair<uint32_t, std::string>> out;
    *status = reader.Poll([&](uint32_t id, std::string_view name) { out.emplace_back(id, std::string(name)); });
    return out;
  }
  // Writes a raw record header at byte `offset` of the table.
  void WriteRecordHeader(uint64_t offset, uint32_t id, uint32_t length) {
    const NameRecordHeader record{id, length};
    std::memcpy(image_.names() + offset, &record, sizeof(record));
  }

  RingImage image_;
};

TEST_F(NameTableTest, ReaderSeesNamesAppendedIncrementally) {
  NameTableWriter writer = Writer();
  NameTableReader reader = Reader();
  EXPECT_EQ(writer.Append("app.handler"), kFirstNameId);
  EXPECT_EQ(writer.Append("Task.step main.py:12"), kFirstNameId + 1);
  NameTableStatus status;
  auto first = PollAll(reader, &status);
  ASSERT_EQ(status, NameTableStatus::kOk);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0], std::make_pair(kFirstNameId, std::string("app.handler")));
  EXPECT_EQ(first[1], std::make_pair(kFirstNameId + 1, std::string("Task.step main.py:12")));

  EXPECT_EQ(writer.Append(""), kFirstNameId + 2);
  EXPECT_EQ(writer.Append("Protocol.data_received"), kFirstNameId + 3);
  auto second = PollAll(reader, &status);
  ASSERT_EQ(status, NameTableStatus::kOk);
  ASSERT_EQ(second.size(), 2u);  // only the new ones
  EXPECT_EQ(second[0], std::make_pair(kFirstNameId + 2, std::string()));
  EXPECT_EQ(second[1].second, "Protocol.data_received");
  EXPECT_EQ(image_.header()->names_count.load(), 4u);
  EXPECT_TRUE(PollAll(reader, &status).empty());
}

TEST_F(NameTableTest, ReaderSeesOnlyPublishedRecords) {
  NameTableWriter writer = Writer();
  NameTableReader reader = Reader();
  writer.Append("published");
  const uint64_t published_end = image_.header()->names_end.load();
  writer.Append("in the making");
  // Roll names_end back: the second record's bytes are there but not published yet.
  image_.header()->names_end.store(published_end);
  NameTableStatus status;
  auto seen = PollAll(reader, &status);
  ASSERT_EQ(status, NameTableStatus::kOk);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].second, "published");

  image_.header()->names_end.store(published_end + NameRecordSize(13));
  seen = PollAll(reader, &status);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], std::make_pair(kFirstNameId + 1, std::string("in the making")));
}

class SmallNameTableTest : public NameTableTest {
 protected:
  SmallNameTableTest() : NameTableTest(64) {}
};

TEST_F(SmallNameTableTest, FullTableAnswersOtherAndSetsWriterFlag) {
  NameTableWriter writer = Writer();
  const std::string name(20, 'n');  // 8 + 20 -> 32 bytes per record: two fit in 64
  EXPECT_EQ(writer.Append(name), kFirstNameId);
  EXPECT_EQ(writer.Append(name), kFirstNameId + 1);
  EXPECT_EQ(image_.header()->writer_flags.load() & kWriterNamesFull, 0u);
  EXPECT_EQ(writer.Append(name), kNameIdOther);
  EXPECT_NE(image_.header()->writer_flags.load() & kWriterNamesFull, 0u);
  EXPECT_EQ(image_.header()->names_count.load(), 2u);
  EXPECT_EQ(image_.header()->names_end.load(), 64u);
}

TEST_F(NameTableTest, LongNameIsCutAtUtf8CharacterBoundary) {
  NameTableWriter writer = Writer();
  NameTableReader reader = Reader();
  // 1023 ASCII bytes then a 2-byte character straddling the 1024-byte limit.
  const std::string straddling = std::string(kMaxNameLength - 1, 'a') + "\xC3\xA9" + "tail";
  const std::string ascii = std::string(kMaxNameLength + 50, 'b');
  writer.Append(straddling);
  writer.Append(ascii);
  NameTableStatus status;
  auto seen = PollAll(reader, &status);
  ASSERT_EQ(status, NameTableStatus::kOk);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].second, std::string(kMaxNameLength - 1, 'a'));  // the character is dropped whole
  EXPECT_EQ(seen[1].second.size(), kMaxNameLength);
}

TEST_F(NameTableTest, ReaderRejectsImpossibleLength) {
  NameTableReader reader = Reader();
  WriteRecordHeader(0, kFirstNameId, kMaxNameLength + 1);
  image_.header()->names_end.store(2048);
  NameTableStatus status;
  EXPECT_TRUE(PollAll(reader, &status).empty());
  EXPECT_EQ(status, NameTableStatus::kCorrupt);
  // Corruption is sticky: fixing the bytes later does not bring the reader back.
  WriteRecordHeader(0, kFirstNameId, 4);
  PollAll(reader, &status);
  EXPECT_EQ(status, NameTableStatus::kCorrupt);
}

TEST_F(NameTableTest, ReaderRejectsRecordRunningPastPublishedEnd) {
  NameTableReader reader = Reader();
  WriteRecordHeader(0, kFirstNameId, 100);
  image_.header()->names_end.store(NameRecordSize(100) - 8);
  NameTableStatus status;
  PollAll(reader, &status);
  EXPECT_EQ(status, NameTableStatus::kCorrupt);
}

TEST_F(NameTableTest, ReaderRejectsOutOfSequenceId) {
  NameTableWriter writer = Writer();
  NameTableReader reader = Reader();
  writer.Append("first");
  const uint64_t end = image_.header()->names_end.load();
  WriteRecordHeader(end, kFirstNameId + 5, 4);  // should be kFirstNameId + 1
  image_.header()->names_end.store(end + NameRecordSize(4));
  NameTableStatus status;
  auto seen = PollAll(reader, &status);
  EXPECT_EQ(status, NameTableStatus::kCorrupt);
  ASSERT_EQ(seen.size(), 1u);  // the good record before it was still delivered
  EXPECT_EQ(seen[0].second, "first");
}

TEST_F(NameTableTest, ReaderRejectsEndBeyondCapacity) {
  NameTableReader reader = Reader();
  image_.header()->names_end.store(image_.header()->names_capacity + 8);
  NameTableStatus status;
  PollAll(reader, &status);
  EXPECT_EQ(status, NameTableStatus::kCorrupt);
}

TEST_F(NameTableTest, ReaderRejectsEndMovingBackwards) {
  NameTableWriter writer = Writer();
  NameTableReader reader = Reader();
  writer.Append("one");
  writer.Append("two");
  NameTableStatus status;
  PollAll(reader, &status);
  ASSERT_EQ(status, NameTableStatus::kOk);
  image_.header()->names_end.store(8);
  PollAll(reader, &status);
  EXPECT_EQ(status, NameTableStatus::kCorrupt);
}

}  // namespace
}  // namespace loopwatch::protocol
