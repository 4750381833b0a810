// libFuzzer target: everything the agent does with the bytes of a ring file, fed hostile bytes.
//
// A ring file is written by any process that can write the ring directory, so its header, name
// table, samples, in-flight slot and stall report are untrusted input to the agent. Each fuzz input
// is one whole ring file, decoded twice:
//
// 1. The protocol decoders over an exact-size heap copy (so ASan reports a read even one byte past
//    the end of the file): CheckHeader, NameTableReader, RingReader, ReadInflight, ReadReport.
// 2. The agent's own code over a real file in /dev/shm, as the agent runs it: RingFile::Open (owner, size,
//    CheckHeader, the guarded mapping), TrackedRing (LoopMetrics with label sanitizing and top-K,
//    the slow-callback log, StallWatch with its capture or arm request, the current attribution and
//    report parsing, BlockedTime over the attribution table), a watch tick, two drain
//    cycles (the second past the report timeout), Status, the /metrics text writer, the
//    /api/status, /api/stalls and /api/slow JSON, and retirement (TrackedRing's destructor).
//    A mapping is only as precise as a page, which is why pass 1 exists.
//
// Beyond ASan/UBSan, the target aborts when a promise breaks: both passes accept the same files and
// read the same names; /metrics is valid UTF-8 and well-formed text format 0.0.4; every JSON
// document is valid JSON; a drain yields at most the ring's capacity and a second drain of an
// unchanged ring yields nothing; a retired ring leaves no series behind.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <new>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include "expose/agent_status.h"
#include "stalls/event_log.h"
#include "aggregate/loop_families.h"
#include "aggregate/loop_metrics.h"
#include "loopwatch/header_check.h"
#include "loopwatch/layout.h"
#include "loopwatch/name_table.h"
#include "loopwatch/ring.h"
#include "loopwatch/stall_report.h"
#include "discover/owner_policy.h"
#include "discover/ring_file.h"
#include "stalls/stall_watch.h"
#include "expose/status_json.h"
#include "expose/text_exposition.h"
#include "drain/tracked_ring.h"

namespace {

using namespace loopwatch;

void Require(bool ok, const char* invariant) {
  if (!ok) {
    std::fprintf(stderr, "ring_decoder_fuzzer: invariant broken: %s\n", invariant);
    std::abort();
  }
}

// ---- pass 1: the protocol decoders -------------------------------------------------------------

// The agent maps a file page-aligned, so the header's atomics are aligned; libFuzzer's buffer is
// not. The copy is exactly `size` bytes, so ASan still reports an access one byte past the end.
class AlignedCopy {
 public:
  AlignedCopy(const uint8_t* data, std::size_t n)
      : bytes_(static_cast<unsigned char*>(::operator new(n == 0 ? 1 : n, std::align_val_t{4096}))) {
    if (n != 0) std::memcpy(bytes_, data, n);
  }
  ~AlignedCopy() { ::operator delete(bytes_, std::align_val_t{4096}); }
  AlignedCopy(const AlignedCopy&) = delete;
  AlignedCopy& operator=(const AlignedCopy&) = delete;
  unsigned char* bytes() const { return bytes_; }

 private:
  unsigned char* const bytes_;
};

struct ProtocolResult {
  bool accepted = false;
  uint32_t names = 0;  // records NameTableReader delivered before the end or the first violation
};

ProtocolResult DecodeProtocol(const uint8_t* data, std::size_t size) {
  ProtocolResult result;
  const AlignedCopy file(data, size);
  const protocol::HeaderCheck check = protocol::CheckHeader(file.bytes(), size);
  if (!check.ok()) {
    Require(!protocol::HeaderErrorName(check.error).empty(), "every refusal has a reason label");
    return result;
  }
  result.accepted = true;
  const protocol::HeaderSnapshot& h = check.header;
  Require(h.ring_offset + uint64_t{h.ring_capacity} * sizeof(protocol::Sample) <= size &&
              h.names_offset + h.names_capacity <= size && h.report_offset + h.report_capacity <= size,
          "CheckHeader keeps every section inside the file");

  auto* live = reinterpret_cast<protocol::RingHeader*>(file.bytes());
  protocol::NameTableReader names(live, file.bytes() + h.names_offset, h.names_capacity);
  uint32_t expected_id = protocol::kFirstNameId;
  names.Poll([&](uint32_t id, std::string_view text) {
    Require(id == expected_id++ && text.size() <= protocol::kMaxNameLength, "names arrive in order, bounded");
    ++result.names;
  });

  // A header field nothing interprets picks the batch size, so batch boundaries get explored too.
  const uint32_t batch = 1 + static_cast<uint32_t>(h.created_unix_ns % 97);
  protocol::RingReader reader(live, reinterpret_cast<const protocol::Sample*>(file.bytes() + h.ring_offset),
                              h.ring_capacity);
  uint64_t drained = 0;
  uint32_t got = 0;
  do {
    if (reader.Drain(batch, [](const protocol::Sample&) {}, &got) != protocol::DrainStatus::kOk) break;
    drained += got;
  } while (got == batch);
  Require(drained <= h.ring_capacity, "one drain never yields more samples than the ring holds");

  uint64_t start = 0;
  uint32_t name_id = 0;
  protocol::ReadInflight(*live, &start, &name_id);
  protocol::ReportFields fields;
  std::string text;
  if (protocol::ReadReport(file.bytes() + h.report_offset, h.report_capacity, &fields, &text)) {
    Require(text.size() + sizeof(protocol::ReportHeader) <= h.report_capacity, "the report text fits its region");
  }
  return result;
}

// ---- pass 2: the agent ------------------------------------------------------------------------

// What outlives every ring in the agent: the registry, the families and the event logs. Each input
// is mapped, drained and retired against them, as one ring in a long-running agent. Never destroyed
// (a static destructor would run after libFuzzer's exit handlers).
struct Agent {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  agent::LoopFamilies families{*registry};
  agent::EventLog stall_log{2};  // small: rendered and re-parsed for every input; 2 still drops the oldest
  agent::EventLog slow_log{2};
  std::string dir;
  std::string path;  // unlinked as soon as it is mapped: a crash leaves nothing in the directory
};
Agent* g_agent = nullptr;

void WriteFile(const std::string& path, const uint8_t* data, std::size_t size) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  Require(fd >= 0, "the ring file can be written");
  for (std::size_t done = 0; done < size;) {
    const ssize_t n = write(fd, data + done, size - done);
    Require(n > 0, "the ring file can be written");
    done += static_cast<std::size_t>(n);
  }
  close(fd);
}

bool IsValidJson(const std::string& text) {
  return !nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false).is_discarded();
}

// Strict UTF-8 (RFC 3629), written independently of agent/src/label_text.cpp so it can disagree.
bool IsValidUtf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    uint32_t cp = 0;
    if (b < 0x80) {
      n = 1, cp = b;
    } else if ((b & 0xE0) == 0xC0) {
      n = 2, cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      n = 3, cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      n = 4, cp = b & 0x07;
    } else {
      return false;
    }
    if (s.size() - i < n) return false;
    for (std::size_t k = 1; k < n; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    static constexpr uint32_t kMinForLength[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == ':';
}

// One line of Prometheus text format 0.0.4: a HELP/TYPE comment of a loopwatch_ family, or
// `name{label="value",...} number` where values escape only \\, \" and \n.
bool IsWellFormedLine(std::string_view line) {
  if (line.starts_with("# HELP loopwatch_") || line.starts_with("# TYPE loopwatch_")) return true;
  if (!line.starts_with("loopwatch_")) return false;
  std::size_t i = 0;
  while (i < line.size() && IsNameChar(line[i])) ++i;
  if (i < line.size() && line[i] == '{') {
    ++i;
    while (i < line.size() && line[i] != '}') {
      const std::size_t name_start = i;
      while (i < line.size() && IsNameChar(line[i])) ++i;
      if (i == name_start || line.substr(i, 2) != "=\"") return false;
      i += 2;
      for (;;) {
        if (i >= line.size()) return false;
        if (line[i] == '"') break;
        if (line[i] == '\\') {
          if (i + 1 >= line.size() || (line[i + 1] != '\\' && line[i + 1] != '"' && line[i + 1] != 'n')) return false;
          ++i;
        }
        ++i;
      }
      ++i;  // closing quote
      if (i < line.size() && line[i] == ',') ++i;
    }
    if (i >= line.size()) return false;
    ++i;  // closing brace
  }
  if (i >= line.size() || line[i] != ' ') return false;
  const std::string number(line.substr(i + 1));
  if (number == "+Inf" || number == "-Inf" || number == "NaN") return true;
  if (number.empty()) return false;
  char* end = nullptr;
  std::strtod(number.c_str(), &end);
  return end == number.c_str() + number.size();
}

void CheckExposition(const std::string& text) {
  Require(IsValidUtf8(text), "/metrics is valid UTF-8");
  Require(text.find('\0') == std::string::npos, "/metrics has no NUL byte");
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t end = text.find('\n', start);
    Require(end != std::string::npos, "/metrics ends with a newline");
    if (!IsWellFormedLine(std::string_view(text).substr(start, end - start))) {
      std::fprintf(stderr, "bad line: %.*s\n", static_cast<int>(end - start), text.data() + start);
      Require(false, "every /metrics line is well-formed text format 0.0.4");
    }
    start = end + 1;
  }
}

void RunAgent(const uint8_t* data, std::size_t size, const ProtocolResult& protocol_result) {
  Agent& a = *g_agent;
  WriteFile(a.path, data, size);
  agent::RingOpenResult opened = agent::RingFile::Open(a.path, agent::OwnerPolicy{});
  unlink(a.path.c_str());  // the agent keeps using its descriptor and mapping, as after a writer's exit
  Require(protocol_result.accepted == (opened.ring != nullptr), "the agent accepts exactly what CheckHeader accepts");
  if (!opened.ring) {
    Require(!opened.reason.empty(), "every refusal has a reason label");
    return;
  }
  const protocol::HeaderSnapshot header = opened.ring->header();
  // Fields nothing interprets pick K, so top-K evictions get explored too (the agent: --callbacks.top-k).
  agent::RingShared shared{.families = a.families,
                           .aggregation = {.top_k = 1 + static_cast<uint32_t>(header.loop_thread_id) % 8,
                                           .slow_threshold_seconds = 0.1,
                                           .slow_event_threshold_seconds = 0.02},
                           .stalls = {},
                           .stall_log = a.stall_log,
                           .slow_log = a.slow_log};
  {
    agent::TrackedRing ring(std::move(opened.ring), "lw-fuzz.ring", shared);
    // A fixed clock keeps runs reproducible; the second cycle is past StallWatch's report timeout.
    const auto now = agent::TrackedRing::Clock::time_point{} + std::chrono::hours(1000);
    const uint64_t first = ring.Drain(uint64_t{4} * header.ring_capacity, now);
    ring.Watch(now + std::chrono::milliseconds(10));  // the in-flight watch between drains
    const auto later = now + shared.stalls.report_timeout + std::chrono::seconds(1);
    const uint64_t second = ring.Drain(uint64_t{4} * header.ring_capacity, later);
    Require(first <= header.ring_capacity, "one drain never yields more samples than the ring holds");
    Require(second == 0, "a second drain of an unchanged ring yields nothing");
    Require(ring.metrics().names() == protocol_result.names, "the agent keeps every name the table reader delivered");
    Require(ring.metrics().named_series() <= shared.aggregation.top_k + 1, "at most K named series plus other");
    ring.CheckWriterGone();

    std::string exposition;
    agent::AppendTextExposition(a.registry->Collect(), exposition);
    CheckExposition(exposition);

    agent::AgentStatus status;
    status.version = "fuzz";
    status.ring_dir = a.dir;
    status.rings.push_back(ring.Status());
    Require(IsValidJson(agent::RenderStatusJson(status)), "/api/status is valid JSON");
    Require(IsValidJson(a.stall_log.RenderJson()), "/api/stalls is valid JSON");
    Require(IsValidJson(a.slow_log.RenderJson()), "/api/slow is valid JSON");
  }  // retirement
  for (const prometheus::MetricFamily& family : a.registry->Collect()) {
    // The sampling delay is the agent's own histogram (one series, no ring's labels).
    if (family.name == "loopwatch_sampling_delay_seconds") continue;
    Require(family.metric.empty(), "a retired ring leaves no series behind");
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);  // StallWatch logs every stall; millions of inputs would flood
  g_agent = new Agent;
  g_agent->dir = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
  g_agent->path = g_agent->dir + "/loopwatch-fuzz-" + std::to_string(getpid()) + ".ring";
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const ProtocolResult protocol_result = DecodeProtocol(data, size);
  RunAgent(data, size, protocol_result);
  return 0;
}
