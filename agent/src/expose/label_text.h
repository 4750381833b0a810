// Label values and JSON strings must be valid UTF-8, but service and callback names come from
// shared memory that any process could have written. This file turns untrusted bytes into text a
// Prometheus scrape (and nlohmann::json, and a log line) always accepts.
#pragma once

#include <string>
#include <string_view>

namespace loopwatch::agent {

// Returns `bytes` with every invalid UTF-8 sequence (and every NUL) replaced by U+FFFD.
// Thread safe (pure function).
std::string SanitizeUtf8(std::string_view bytes);

// For log lines: SanitizeUtf8, then control characters written as \n, \r, \t or \xNN, so that a
// name or file name from a ring directory cannot forge or split a log line. Thread safe.
std::string ForLog(std::string_view bytes);

}  // namespace loopwatch::agent
