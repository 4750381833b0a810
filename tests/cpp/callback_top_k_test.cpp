// Tests of CallbackTopK (agent/src/callback_top_k.h): admission while positions are free, "other"
// for unknown ids, exact totals, and re-ranking with hysteresis.
#include "aggregate/callback_top_k.h"

#include <gtest/gtest.h>

namespace loopwatch::agent {
namespace {

using protocol::kFirstNameId;
using protocol::kNameIdOther;

TEST(CallbackTopKTest, AdmitsNamesInFirstSeenOrderWhilePositionsAreFree) {
  CallbackTopK top(2);
  for (uint32_t id = kFirstNameId; id < kFirstNameId + 3; ++id) top.AddName(id);
  EXPECT_EQ(top.Record(kFirstNameId + 1, 5), 1u);
  EXPECT_EQ(top.Record(kFirstNameId, 5), 2u);
  EXPECT_EQ(top.Record(kFirstNameId + 2, 500), CallbackTopK::kOtherPosition);  // full
  EXPECT_EQ(top.Record(kFirstNameId + 1, 5), 1u);
  EXPECT_EQ(top.members(), 2u);
  EXPECT_EQ(top.MemberAt(1), kFirstNameId + 1);
}

TEST(CallbackTopKTest, ReservedAndUnknownIdsAreOther) {
  CallbackTopK top(5);
  top.AddName(kFirstNameId);
  EXPECT_EQ(top.Record(kNameIdOther, 10), CallbackTopK::kOtherPosition);
  EXPECT_EQ(top.Record(0, 10), CallbackTopK::kOtherPosition);
  EXPECT_EQ(top.Record(kFirstNameId + 1, 10), CallbackTopK::kOtherPosition);  // not in the table yet
  EXPECT_EQ(top.members(), 0u);
}

TEST(CallbackTopKTest, KeepsExactTotalsPerName) {
  CallbackTopK top(1);
  top.AddName(kFirstNameId);
  top.AddName(kFirstNameId + 1);
  for (int i = 0; i < 1000; ++i) {
    top.Record(kFirstNameId, 3);
    top.Record(kFirstNameId + 1, 7);
  }
  EXPECT_EQ(top.TotalTicks(kFirstNameId), 3000u);
  EXPECT_EQ(top.TotalTicks(kFirstNameId + 1), 7000u);  // totals are kept for outsiders too
}

TEST(CallbackTopKTest, RerankReplacesSmallestMemberOnlyBeyondHysteresis) {
  CallbackTopK top(2);
  for (uint32_t id = kFirstNameId; id < kFirstNameId + 3; ++id) top.AddName(id);
  top.Record(kFirstNameId, 1000);      // member, position 1
  top.Record(kFirstNameId + 1, 100);   // member, position 2 (smallest)
  top.Record(kFirstNameId + 2, 105);   // outsider: beats 100, but by less than 10 %
  EXPECT_TRUE(top.Rerank().empty());
  top.Record(kFirstNameId + 2, 10);    // now 115 > 110
  const auto swaps = top.Rerank();
  ASSERT_EQ(swaps.size(), 1u);
  EXPECT_EQ(swaps[0].position, 2u);
  EXPECT_EQ(swaps[0].evicted_id, kFirstNameId + 1);
  EXPECT_EQ(swaps[0].admitted_id, kFirstNameId + 2);
  EXPECT_EQ(top.PositionOf(kFirstNameId + 2), 2u);
  EXPECT_EQ(top.PositionOf(kFirstNameId + 1), CallbackTopK::kOtherPosition);
  EXPECT_TRUE(top.Rerank().empty());  // stable: the evicted name (100) does not beat 115 * 1.1
}

TEST(CallbackTopKTest, RerankSwapsSeveralPairsLargestOutsiderForSmallestMember) {
  CallbackTopK top(3);
  for (uint32_t id = kFirstNameId; id < kFirstNameId + 6; ++id) top.AddName(id);
  top.Record(kFirstNameId + 0, 10);
  top.Record(kFirstNameId + 1, 20);
  top.Record(kFirstNameId + 2, 1000);
  top.Record(kFirstNameId + 3, 500);  // outsiders
  top.Record(kFirstNameId + 4, 15);   // beats 10 by 50 %, but is paired with 20 after 500 takes 10's place
  top.Record(kFirstNameId + 5, 30);
  const auto swaps = top.Rerank();
  ASSERT_EQ(swaps.size(), 2u);
  EXPECT_EQ(swaps[0].evicted_id, kFirstNameId + 0);
  EXPECT_EQ(swaps[0].admitted_id, kFirstNameId + 3);
  EXPECT_EQ(swaps[1].evicted_id, kFirstNameId + 1);
  EXPECT_EQ(swaps[1].admitted_id, kFirstNameId + 5);
  EXPECT_EQ(top.members(), 3u);
}

}  // namespace
}  // namespace loopwatch::agent
