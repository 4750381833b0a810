// JSON text of stall reports (see report_json.h).
#include "report_json.h"

#include <cstdio>

namespace loopwatch::shim {
namespace {

// Length of the valid UTF-8 sequence at the start of `s` (1..4), or 0 if it is not one: overlong
// forms, surrogates (U+D800..U+DFFF) and code points above U+10FFFF are invalid, as in RFC 3629.
std::size_t ValidUtf8Length(std::string_view s) {
  const auto b0 = static_cast<unsigned char>(s[0]);
  if (b0 < 0x80) return 1;
  std::size_t length;
  uint32_t min;
  uint32_t cp;
  if ((b0 & 0xE0) == 0xC0) {
    length = 2, min = 0x80, cp = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    length = 3, min = 0x800, cp = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    length = 4, min = 0x10000, cp = b0 & 0x07;
  } else {
    return 0;
  }
  if (s.size() < length) return 0;
  for (std::size_t i = 1; i < length; ++i) {
    const auto b = static_cast<unsigned char>(s[i]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return length;
}

void AppendFrame(std::string* out, const FrameInfo& frame) {
  out->append("{\"file\": ");
  AppendJsonString(out, frame.file);
  char line[32];
  std::snprintf(line, sizeof(line), ", \"line\": %d, \"function\": ", frame.line);
  out->append(line);
  AppendJsonString(out, frame.function);
  out->push_back('}');
}

}  // namespace

void AppendJsonString(std::string* out, std::string_view text, std::size_t max_bytes) {
  out->push_back('"');
  const std::size_t start = out->size();
  char piece[8];
  while (!text.empty()) {
    const std::size_t length = ValidUtf8Length(text);
    const auto c = static_cast<unsigned char>(text[0]);
    std::string_view escaped;
    if (length == 0) {
      escaped = "\\ufffd";  // an invalid byte: the replacement character, never the raw byte
    } else if (c == '"' || c == '\\') {
      piece[0] = '\\';
      piece[1] = static_cast<char>(c);
      escaped = std::string_view(piece, 2);
    } else if (c < 0x20 || c == 0x7f) {
      std::snprintf(piece, sizeof(piece), "\\u%04x", c);
      escaped = std::string_view(piece, 6);
    } else {
      escaped = text.substr(0, length);  // a whole, valid character
    }
    if (out->size() - start + escaped.size() > max_bytes) break;  // cut between characters
    out->append(escaped);
    text.remove_prefix(length == 0 ? 1 : length);
  }
  out->push_back('"');
}

std::string ReportJson(const ThreadState& thread, const std::vector<FrameInfo>* frames, std::string_view error,
                       std::size_t max_bytes) {
  // The fixed parts are small and bounded (under 450 bytes: the string limits count escaped bytes),
  // so they always fit a region of kMinReportCapacity. Frames go in while the rest still fits.
  std::string head = "{\"thread\": {\"state\": ";
  AppendJsonString(&head, thread.state, 8);
  head.append(", \"wchan\": ");
  AppendJsonString(&head, thread.wchan, 128);
  head.push_back('}');
  std::string tail;
  if (!error.empty()) {
    tail.append(", \"error\": ");
    AppendJsonString(&tail, error, 200);
  }
  tail.push_back('}');
  if (frames == nullptr) return head + tail;

  constexpr std::string_view kTruncated = ", \"truncated\": true";
  std::string text = head + ", \"frames\": [";
  bool truncated = false;
  std::string one;
  for (std::size_t i = 0; i < frames->size(); ++i) {
    one.clear();
    if (i > 0) one.append(", ");
    AppendFrame(&one, (*frames)[i]);
    // Room for this frame, the closing "]", a possible truncation flag and the tail.
    if (text.size() + one.size() + 1 + kTruncated.size() + tail.size() > max_bytes) {
      truncated = true;
      break;
    }
    text.append(one);
  }
  text.push_back(']');
  if (truncated) text.append(kTruncated);
  text.append(tail);
  return text;
}

}  // namespace loopwatch::shim
