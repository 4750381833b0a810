// The text of a stall report (stall_report.h): UTF-8 JSON that always parses and always fits the
// report region, whatever the strings hold.
//   {"thread": {"state": "R", "wchan": "..."}, "frames": [{"file": "...", "line": 12, "function": "..."}],
//    "truncated": true (only if frames were left out), "error": "..." (only on failure)}
// Strings are escaped for JSON and made valid UTF-8 (an invalid byte becomes U+FFFD), and each is
// cut to a bounded length at a character boundary. Frames that would not fit are left out. Free of
// Python, so the watchdog builds the text after it has released the GIL.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "thread_state.h"

namespace loopwatch::shim {

struct FrameInfo {
  std::string file;      // UTF-8 (the capture replaces what cannot be encoded)
  int line = 0;
  std::string function;  // the code object's qualified name
};

inline constexpr std::size_t kMaxReportString = 1024;  // bytes of one string in the report

// `frames` == nullptr omits the "frames" key (a thread-state-only report); `error` empty omits
// "error". The result is at most `max_bytes` long if max_bytes >= 512 (the fixed parts take less).
std::string ReportJson(const ThreadState& thread, const std::vector<FrameInfo>* frames, std::string_view error,
                       std::size_t max_bytes);

// Appends `text` as a JSON string literal (with quotes) to `out`: escaped, valid UTF-8, at most
// `max_bytes` bytes between the quotes, cut at a character (or escape) boundary.
void AppendJsonString(std::string* out, std::string_view text, std::size_t max_bytes = kMaxReportString);

}  // namespace loopwatch::shim
