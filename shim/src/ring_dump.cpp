// See ring_dump.h.
#include "ring_dump.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "loopwatch/header_check.h"
#include "loopwatch/name_table.h"
#include "portable_symbols.h"

namespace loopwatch::shim {
namespace {

using namespace protocol;

class ReadOnlyMapping {
 public:
  explicit ReadOnlyMapping(const char* path) {
    fd_ = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd_ < 0) return;
    struct stat st {};
    if (FileStatus(fd_, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0) return;
    size_ = static_cast<uint64_t>(st.st_size);
    void* base = mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd_, 0);
    if (base != MAP_FAILED) base_ = base;
  }
  ~ReadOnlyMapping() {
    if (base_ != nullptr) munmap(base_, size_);
    if (fd_ >= 0) close(fd_);
  }
  ReadOnlyMapping(const ReadOnlyMapping&) = delete;
  ReadOnlyMapping& operator=(const ReadOnlyMapping&) = delete;

  const unsigned char* bytes() const { return static_cast<const unsigned char*>(base_); }
  uint64_t size() const { return size_; }
  bool ok() const { return base_ != nullptr; }

 private:
  int fd_ = -1;
  void* base_ = nullptr;
  uint64_t size_ = 0;
};

PyObject* HeaderDict(const HeaderSnapshot& h, const RingHeader* live) {
  return Py_BuildValue(
      "{s:i,s:i,s:i,s:I,s:K,s:i,s:s,s:s,s:s#,s:I,s:K,s:K,s:K,s:K,s:I,s:d,s:d}", "version_major", h.version_major,
      "version_minor", h.version_minor, "pid", h.pid, "loop_id", h.loop_id, "process_start_ticks",
      static_cast<unsigned long long>(h.process_start_ticks), "thread_id", h.loop_thread_id, "loop_kind",
      h.loop_kind == LoopKind::kUvloop ? "uvloop" : "asyncio", "clock_kind",
      h.clock_kind == ClockKind::kTsc ? "tsc" : "monotonic_ns", "service", h.service, static_cast<Py_ssize_t>(h.service_name().size()),
      "ring_capacity", h.ring_capacity, "write_pos",
      static_cast<unsigned long long>(live->write_pos.load(std::memory_order_acquire)), "read_pos",
      static_cast<unsigned long long>(live->read_pos.load(std::memory_order_acquire)), "dropped",
      static_cast<unsigned long long>(live->dropped.load(std::memory_order_relaxed)), "control",
      static_cast<unsigned long long>(live->control.load(std::memory_order_relaxed)), "writer_flags",
      live->writer_flags.load(std::memory_order_relaxed), "clock_ns_per_tick", h.clock_ns_per_tick, "busy_seconds",
      h.TicksToSeconds(live->busy_ticks.load(std::memory_order_relaxed)));
}

}  // namespace

PyObject* ReadRingFile(PyObject* /*module*/, PyObject* path_obj) {
  PyObject* encoded = nullptr;
  if (!PyUnicode_FSConverter(path_obj, &encoded)) return nullptr;
  ReadOnlyMapping map(PyBytes_AS_STRING(encoded));
  Py_DECREF(encoded);
  if (!map.ok()) return PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path_obj);
  const HeaderCheck check = CheckHeader(map.bytes(), map.size());
  if (!check.ok()) {
    PyErr_Format(PyExc_ValueError, "not a readable loopwatch ring: %s", std::string(HeaderErrorName(check.error)).c_str());
    return nullptr;
  }
  const HeaderSnapshot& h = check.header;
  const auto* live = reinterpret_cast<const RingHeader*>(map.bytes());
  PyObject* result = PyDict_New();
  PyObject* header = HeaderDict(h, live);
  PyObject* names = PyDict_New();
  PyObject* samples = PyList_New(0);
  bool ok = result != nullptr && header != nullptr && names != nullptr && samples != nullptr;

  NameTableReader reader(live, map.bytes() + h.names_offset, h.names_capacity);
  const NameTableStatus names_status = reader.Poll([&](uint32_t id, std::string_view name) {
    if (!ok) return;
    PyObject* key = PyLong_FromUnsignedLong(id);
    PyObject* value = PyUnicode_DecodeUTF8(name.data(), static_cast<Py_ssize_t>(name.size()), "replace");
    ok = key != nullptr && value != nullptr && PyDict_SetItem(names, key, value) == 0;
    Py_XDECREF(key);
    Py_XDECREF(value);
  });

  // Peek, do not consume: the samples between read_pos and write_pos, at most one ring's worth.
  const uint64_t write_pos = live->write_pos.load(std::memory_order_acquire);
  uint64_t read_pos = live->read_pos.load(std::memory_order_acquire);
  if (write_pos - read_pos > h.ring_capacity) read_pos = write_pos - h.ring_capacity;
  const auto* records = reinterpret_cast<const Sample*>(map.bytes() + h.ring_offset);
  for (uint64_t pos = read_pos; ok && pos < write_pos; ++pos) {
    Sample s;
    std::memcpy(&s, &records[pos & (h.ring_capacity - 1)], sizeof(s));
    const double ns = h.clock_ns_per_tick;
    PyObject* item = Py_BuildValue(
        "{s:d,s:d,s:N,s:I,s:I,s:s}", "start",
        (static_cast<double>(h.clock_mono_base_ns) + (static_cast<double>(s.start_ticks) - static_cast<double>(h.clock_tick_base)) * ns) * 1e-9, "duration", s.duration_ticks * ns * 1e-9, "lag",
        s.lag_ticks == kLagUnknown ? Py_NewRef(Py_None) : PyFloat_FromDouble(s.lag_ticks * ns * 1e-9), "name_id", s.name_id,
        "handles", s.handles(), "kind",
        s.kind() == static_cast<uint8_t>(SampleKind::kTimer) ? "timer"
        : s.kind() == static_cast<uint8_t>(SampleKind::kIo)  ? "io"
        : s.kind() == static_cast<uint8_t>(SampleKind::kReady) ? "ready"
                                                               : "invalid");
    ok = item != nullptr && PyList_Append(samples, item) == 0;
    Py_XDECREF(item);
  }
  if (ok) {
    ok = PyDict_SetItemString(result, "header", header) == 0 && PyDict_SetItemString(result, "names", names) == 0 &&
         PyDict_SetItemString(result, "samples", samples) == 0 &&
         PyDict_SetItemString(result, "names_ok", names_status == NameTableStatus::kOk ? Py_True : Py_False) == 0;
  }
  Py_XDECREF(header);
  Py_XDECREF(names);
  Py_XDECREF(samples);
  if (!ok) {
    Py_XDECREF(result);
    return nullptr;
  }
  return result;
}

}  // namespace loopwatch::shim
