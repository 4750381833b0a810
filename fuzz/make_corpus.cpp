// Writes the fuzzer's seed corpus (fuzz/corpus/): small ring files made with the protocol's own
// writer code (WriteRingHeader, NameTableWriter, RingWriter), so the fuzzer starts from files the
// agent accepts and drains rather than having to discover the magic, the geometry rules and the name
// table format by itself, plus the edge cases next to each refusal. The files are committed; rerun
// this only when the protocol changes:  build-fuzz/fuzz/make_fuzz_corpus fuzz/corpus
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "loopwatch/attribution.h"
#include "loopwatch/header_writer.h"
#include "loopwatch/layout.h"
#include "loopwatch/name_table.h"
#include "loopwatch/ring.h"
#include "loopwatch/stall_report.h"

namespace {

using namespace loopwatch::protocol;

// A zeroed ring file image, aligned like a mapping (the header's atomics need it).
class Image {
 public:
  explicit Image(uint64_t size) : size_(size), bytes_(static_cast<unsigned char*>(::operator new(size, std::align_val_t{4096}))) {
    std::memset(bytes_, 0, size);
  }
  ~Image() { ::operator delete(bytes_, std::align_val_t{4096}); }
  Image(const Image&) = delete;
  Image& operator=(const Image&) = delete;
  unsigned char* bytes() { return bytes_; }
  uint64_t size() const { return size_; }
  RingHeader* header() { return reinterpret_cast<RingHeader*>(bytes_); }
  RingWriter Writer() {
    return RingWriter(header(), reinterpret_cast<Sample*>(bytes_ + header()->ring_offset), header()->ring_capacity);
  }
  RingReader Reader() {
    return RingReader(header(), reinterpret_cast<const Sample*>(bytes_ + header()->ring_offset), header()->ring_capacity);
  }
  NameTableWriter Names() { return NameTableWriter(header(), bytes_ + header()->names_offset, header()->names_capacity); }

 private:
  const uint64_t size_;
  unsigned char* const bytes_;
};

constexpr RingGeometry kSmall{.ring_capacity = kMinRingCapacity, .names_capacity = 1024, .report_capacity = 0};

WriterIdentity Identity(std::string_view service, LoopKind kind = LoopKind::kAsyncio) {
  return {.pid = 4242, .loop_id = 1, .process_start_ticks = 777, .loop_thread_id = 4243, .loop_kind = kind,
          .clock_kind = ClockKind::kMonotonicNs, .clock_ns_per_tick = 1.0, .created_unix_ns = 1700000000000000000ULL,
          .service = service};
}

Sample MakeSample(uint64_t i, uint32_t name_id, SampleKind kind) {
  Sample s{};
  s.start_ticks = 1000 + 997 * i;
  s.duration_ticks = i % 7 == 6 ? 30'000'000 + i : (i * 7919) % 1'000'000 + 3'000;  // 3 µs .. 1 ms, some 30 ms
  s.lag_ticks = i % 5 == 0 ? kLagUnknown : (i * 131) % 2'000'000;
  s.name_id = name_id;
  s.handles_kind = Sample::PackHandlesKind(static_cast<uint32_t>(i * 3), kind);
  return s;
}

void PushSamples(Image& image, uint64_t count, uint32_t first_name, uint32_t names) {
  RingWriter writer = image.Writer();
  for (uint64_t i = 0; i < count; ++i) {
    const uint32_t id = names == 0 ? kNameIdOther : first_name + static_cast<uint32_t>(i % names);
    writer.TryPush(MakeSample(i, id, static_cast<SampleKind>(1 + i % 3)));
  }
}

bool Save(const std::string& dir, const char* name, const void* bytes, uint64_t size) {
  const std::string path = dir + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return false;
  const bool ok = std::fwrite(bytes, 1, size, f) == size;
  return std::fclose(f) == 0 && ok;
}
bool Save(const std::string& dir, const char* name, Image& image) { return Save(dir, name, image.bytes(), image.size()); }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  bool ok = true;

  {  // A typical asyncio ring: a few names, samples of every kind, some with unknown lag.
    Image image(kSmall.file_size());
    WriteRingHeader(image.bytes(), kSmall, Identity("checkout"));
    NameTableWriter names = image.Names();
    for (const char* name : {"app.handlers:index (app/handlers.py:12)", "Task.__step run_asgi", "HttpToolsProtocol.data_received"}) {
      names.Append(name);
    }
    PushSamples(image, 40, kFirstNameId, 3);
    ok &= Save(dir, "valid-asyncio", image);
  }
  {  // uvloop on the TSC; the ring wrapped, is full, dropped samples and reports busy time.
    Image image(kSmall.file_size());
    WriterIdentity id = Identity("api", LoopKind::kUvloop);
    id.clock_kind = ClockKind::kTsc;
    id.clock_tick_base = 123456789;
    id.clock_mono_base_ns = 987654321;
    id.clock_ns_per_tick = 0.37;
    WriteRingHeader(image.bytes(), kSmall, id);
    NameTableWriter names = image.Names();
    names.Append("a");
    names.Append("b");
    PushSamples(image, 50, kFirstNameId, 2);
    RingReader reader = image.Reader();
    reader.Drain(50, [](const Sample&) {});
    PushSamples(image, kSmall.ring_capacity + 9, kFirstNameId, 2);  // 9 dropped
    image.header()->busy_ticks.store(5'000'000'000ULL, std::memory_order_relaxed);
    ok &= Save(dir, "valid-uvloop-tsc-wrapped-full", image);
  }
  {  // Names that must not reach a label as they are: invalid UTF-8, NUL, quotes, backslash, newline,
     // "other", a duplicate, an empty name and one of the maximum length; the service too.
    const RingGeometry geometry{.ring_capacity = kMinRingCapacity, .names_capacity = 4096 + 1024, .report_capacity = 0};
    Image image(geometry.file_size());
    WriteRingHeader(image.bytes(), geometry, Identity("svc\xff\"\\\n\xc3"));
    NameTableWriter names = image.Names();
    names.Append("bad\xc0\xafutf8\xed\xa0\x80\xf4\x90\x80\x80");
    names.Append(std::string_view("nul\0inside", 10));
    names.Append("quote\" back\\slash\nnewline");
    names.Append("other");
    names.Append("dup");
    names.Append("dup");
    names.Append("");
    names.Append(std::string(kMaxNameLength, 'x'));
    PushSamples(image, 60, kFirstNameId, 8);
    ok &= Save(dir, "valid-hostile-names", image);
  }
  {  // A name table that filled up: later names became "other" (id 1) and the writer flag is set.
    const RingGeometry geometry{.ring_capacity = kMinRingCapacity, .names_capacity = 64, .report_capacity = 0};
    Image image(geometry.file_size());
    WriteRingHeader(image.bytes(), geometry, Identity("full"));
    NameTableWriter names = image.Names();
    for (int i = 0; i < 8; ++i) names.Append("name-" + std::to_string(i));  // 4 fit
    PushSamples(image, 30, kNameIdOther, 6);  // ids 1 ("other") to 6 (never published)
    ok &= Save(dir, "valid-names-full", image);
  }
  {  // The smallest layout CheckHeader accepts: no report region, the ring right after the names
     // (aligned to 8 bytes, not to a page). Mutating this one reaches every section quickly.
    const RingGeometry geometry{.ring_capacity = kMinRingCapacity, .names_capacity = 256, .report_capacity = 0};
    const uint64_t ring_offset = geometry.report_offset();
    Image image(ring_offset + uint64_t{kMinRingCapacity} * sizeof(Sample));
    RingHeader* h = WriteRingHeader(image.bytes(), geometry, Identity("tiny"), /*publish=*/false);
    h->ring_offset = ring_offset;
    h->file_size = image.size();
    image.Names().Append("f");
    PushSamples(image, 20, kFirstNameId, 1);
    h->magic.store(kMagic, std::memory_order_release);
    ok &= Save(dir, "valid-compact", image);
  }
  // A loop stuck in a callback for an hour (the fuzzer's clock is fixed at 1000 h of CLOCK_MONOTONIC)
  // whose watchdog already answered the agent's first capture request (request 1): a complete stack,
  // and one with only the thread's OS state.
  for (const auto stage : {ReportStage::kComplete, ReportStage::kThreadStateOnly}) {
    const RingGeometry geometry{.ring_capacity = kMinRingCapacity, .names_capacity = 1024, .report_capacity = 2048};
    Image image(geometry.file_size());
    WriteRingHeader(image.bytes(), geometry, Identity("stuck"));
    image.Names().Append("app.views:report (app/views.py:88)");
    PushSamples(image, 12, kFirstNameId, 1);
    RingHeader* h = image.header();
    h->inflight_name_id.store(kFirstNameId, std::memory_order_relaxed);
    h->inflight_start_ticks.store(999ULL * 3600 * 1000000000, std::memory_order_release);
    h->watchdog_wakeups.store(1, std::memory_order_relaxed);
    const ReportFields fields{.request = 1, .callback_start_ticks = 999ULL * 3600 * 1000000000, .name_id = kFirstNameId,
                              .captured_unix_ns = 1700000000000000000ULL, .gil_wait_ns = 1500, .stage = stage};
    const std::string text =
        stage == ReportStage::kComplete
            ? R"({"thread":{"state":"R","wchan":"0"},"frames":[{"file":"app/views.py","line":90,"function":"report"},)"
              R"({"file":"app/db.py","line":12,"function":"query"}]})"
            : R"({"thread":{"state":"D","wchan":"io_schedule"}})";
    WriteReport(image.bytes() + h->report_offset, geometry.report_capacity, fields, text);
    ok &= Save(dir, stage == ReportStage::kComplete ? "valid-stall-report" : "valid-stall-thread-state", image);
    if (stage == ReportStage::kComplete) {  // regression: a report region not 8-byte aligned is refused
      h->report_offset += 4;
      h->report_capacity -= 4;
      ok &= Save(dir, "misaligned-report-offset", image);
    }
  }
  {  // v1.3: a slow callback being sampled: names, three attribution slots, the current attribution.
    const RingGeometry geometry{
        .ring_capacity = kMinRingCapacity, .names_capacity = 1024, .report_capacity = 1024, .attribution_capacity = 256};
    Image image(geometry.file_size());
    WriteRingHeader(image.bytes(), geometry, Identity("sampled"));
    const uint32_t task = image.Names().Append("Task.__step of RequestResponseCycle.run_asgi() at uvicorn/x.py:1");
    const uint32_t endpoint = image.Names().Append("GET /orders/{order_id}");
    const uint32_t handler = image.Names().Append("app.routes.get_order");
    const uint32_t site = image.Names().Append("app.db.load (app/db.py:42)");
    PushSamples(image, 8, kFirstNameId, 1);
    RingHeader* h = image.header();
    AttributionTableWriter table(h, image.bytes() + h->attribution_offset, geometry.attribution_capacity);
    table.Add(table.Append({endpoint, handler, site, 'S'}), 250'000'000);
    table.Add(table.Append({endpoint, handler, site, 'R'}), 10'000'000);
    table.Add(table.Append({0, 0, site, 'D'}), 1);
    const uint64_t start = 999ULL * 3600 * 1000000000;
    h->inflight_name_id.store(task, std::memory_order_relaxed);
    h->inflight_start_ticks.store(start, std::memory_order_release);
    WriteAttribution(*h, {.start_ticks = start, .endpoint = endpoint, .handler = handler, .site = site, .samples = 25,
                          .state = 'S', .first_sample_mono_ns = start + 55'000'000});
    ok &= Save(dir, "valid-attribution", image);
  }
  {  // Refused or retired files, one per reason, each one edit away from a valid one.
    Image image(kSmall.file_size());
    WriteRingHeader(image.bytes(), kSmall, Identity("edge"));
    image.Names().Append("n");
    PushSamples(image, 10, kFirstNameId, 1);
    RingHeader* h = image.header();

    h->write_pos.store(h->read_pos.load() + kSmall.ring_capacity + 1);  // ran ahead: corrupt ring
    ok &= Save(dir, "corrupt-write-pos-ahead", image);
    h->write_pos.store(10);
    h->read_pos.store(11);  // moved backwards
    ok &= Save(dir, "corrupt-write-pos-behind", image);
    h->read_pos.store(0);

    NameRecordHeader record;
    std::memcpy(&record, image.bytes() + h->names_offset, sizeof(record));
    record.id = kFirstNameId + 1;  // out of sequence
    std::memcpy(image.bytes() + h->names_offset, &record, sizeof(record));
    ok &= Save(dir, "corrupt-name-id", image);
    record.id = kFirstNameId;
    record.length = 600;  // runs past names_end
    std::memcpy(image.bytes() + h->names_offset, &record, sizeof(record));
    ok &= Save(dir, "corrupt-name-length", image);
    record.length = 1;
    std::memcpy(image.bytes() + h->names_offset, &record, sizeof(record));

    ok &= Save(dir, "truncated-by-one", image.bytes(), image.size() - 1);
    ok &= Save(dir, "header-only", image.bytes(), sizeof(RingHeader));
    h->version_major = kVersionMajor + 1;
    ok &= Save(dir, "version-mismatch", image);
    h->version_major = kVersionMajor;
    h->clock_ns_per_tick = 0.0;
    ok &= Save(dir, "bad-clock", image);
    h->clock_ns_per_tick = 1.0;
    h->magic.store(0);
    ok &= Save(dir, "not-ready", image);
  }
  if (!ok) {
    std::fprintf(stderr, "make_fuzz_corpus: cannot write into %s\n", dir.c_str());
    return 1;
  }
  return 0;
}
