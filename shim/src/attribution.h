// Which endpoint and which line a slow callback is in: derived by the watchdog thread from one
// sample of the loop thread's Python stack (protocol/loopwatch/attribution.h carries the result).
//   - site: the innermost frame of the user's own code, "module.function (path/file.py:LINE)". A
//     frame's file is judged by the longest matching prefix: a skipped prefix (the standard library,
//     the servers and frameworks, loopwatch itself) or a library prefix (site-packages, when the
//     user named their own packages) is not the user's, a user prefix is, and a file under none is
//     (the application's own tree). No frame of the user's: the innermost frame.
//   - handler: for ASGI requests the route's endpoint (scope["endpoint"]), else the outermost frame
//     of the user's code ("module.function").
//   - endpoint: "METHOD /route/{template}" from the ASGI scope of the innermost frame that has a
//     `scope` variable, when the framework put the matched route in it (Starlette's and FastAPI's
//     routers store "route" and/or "endpoint"); never the raw path. Empty when unknown.
// The rules are set from Python (loopwatch/_attribution.py) with the GIL held; the watchdog reads
// them with the GIL held. Everything here runs under the GIL and runs no Python code of the app:
// only C getters, dict lookups and frame reads.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "loopwatch/attribution.h"
#include "loopwatch/name_table.h"

#include "report_json.h"

namespace loopwatch::shim {

struct AttributionRules {  // the longest matching prefix decides (see above)
  std::vector<std::string> skip_prefixes;
  std::vector<std::string> library_prefixes;
  std::vector<std::string> user_prefixes;
  std::vector<std::string> roots;             // stripped from file names, longest first (sys.path)
};

// GIL held.
AttributionRules& Rules();

struct SampleNames {
  std::string endpoint;  // "" when unknown
  std::string handler;
  std::string site;
};

// GIL held. Walks the stack of the thread with Python ident `thread_ident` once: the names, and the
// frames for a stall report when `frames` is not null (at most `max_frames`). False with `error` set
// when the thread has no Python frames.
bool SampleStack(unsigned long thread_ident, std::size_t max_frames, SampleNames* names,
                 std::vector<FrameInfo>* frames, std::string* error);

// What one ring's watchdog has written so far, kept by the ring's LoopState across watchdog restarts
// (a fork stops and starts the thread), so no name or key is ever written twice. GIL held.
struct AttributionMemo {
  std::unordered_map<std::string, uint32_t> name_ids;
  std::map<protocol::AttributionKey, uint32_t> slots;  // key -> table slot

  // The name's id in `table` (appended on first use; kNameIdOther when the table is full). "" is 0.
  uint32_t NameId(protocol::NameTableWriter& table, const std::string& name);
  // The key's slot in `writer` (appended on first use).
  uint32_t Slot(protocol::AttributionTableWriter& writer, const protocol::AttributionKey& key);
};

// The rule for one file name (for tests and status): true if it counts as the user's code.
bool IsUserFile(const std::string& file, const AttributionRules& rules);

}  // namespace loopwatch::shim
