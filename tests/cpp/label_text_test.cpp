// Tests of SanitizeUtf8 (agent/src/label_text.h): valid text passes unchanged, anything a scrape or
// JSON encoder would reject is replaced by U+FFFD.
#include "label_text.h"

#include <gtest/gtest.h>

namespace loopwatch::agent {
namespace {

TEST(LabelTextTest, KeepsValidUtf8Unchanged) {
  const std::string text = "Task.step caf\xC3\xA9.py:12 \xE2\x82\xAC \xF0\x9F\x98\x80";
  EXPECT_EQ(SanitizeUtf8(text), text);
}

TEST(LabelTextTest, ReplacesInvalidBytes) {
  EXPECT_EQ(SanitizeUtf8("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(SanitizeUtf8("\xC3"), "\xEF\xBF\xBD");                         // truncated sequence
  EXPECT_EQ(SanitizeUtf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");       // overlong '/'
  EXPECT_EQ(SanitizeUtf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(SanitizeUtf8(std::string_view("a\0b", 3)), "a\xEF\xBF\xBD" "b");
}

}  // namespace
}  // namespace loopwatch::agent
