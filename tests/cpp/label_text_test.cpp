// Tests of SanitizeUtf8 and ForLog (agent/src/label_text.h): valid text passes unchanged, anything a
// scrape or JSON encoder would reject is replaced by U+FFFD, and nothing can split a log line.
#include "expose/label_text.h"

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

TEST(LabelTextTest, LogTextCannotForgeLogLines) {
  EXPECT_EQ(ForLog("svc\n[2026-01-01] [error] fake"), "svc\\n[2026-01-01] [error] fake");
  EXPECT_EQ(ForLog("a\r\tb\x1b[31m\x7f"), "a\\r\\tb\\x1b[31m\\x7f");
  EXPECT_EQ(ForLog("caf\xC3\xA9 \xFF"), "caf\xC3\xA9 \xEF\xBF\xBD");
}

}  // namespace
}  // namespace loopwatch::agent
