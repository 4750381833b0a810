// The callback limit's store and its two Python functions (see callback_limit.h for why it exists).
#include "callback_limit.h"

#include <cmath>
#include <cstddef>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "loopwatch/name_table.h"
#include "tick_clock.h"

namespace loopwatch::shim {
namespace {

using namespace protocol;

// Bounded: a test that blocks its loop thousands of times must not grow the process. A test with
// one offender is already failed; the first ones and the count of the rest are all it needs.
constexpr std::size_t kMaxStored = 100;

struct OverLimit {
  std::string name;
  uint64_t duration_ticks;
  uint32_t loop_id;
  LoopKind loop_kind;
  uint8_t sample_kind;
};

struct Store {
  std::vector<OverLimit> entries;  // size() <= kMaxStored
  uint64_t missed = 0;             // over the limit after the store was full
};
Store& TheStore() {
  static auto* store = new Store;  // never destroyed: a loop may still run at interpreter exit
  return *store;
}

// The name a sample's id stands for in its ring's name table. The shim appended that record (on this
// thread, before the callback ran) and never rewrites it, so the table is read like the agent does,
// from the start: a scan of at most names_capacity bytes, on the cold path only.
std::string ResolveName(const RingHeader* header, uint32_t name_id) {
  if (name_id == kNameIdOther) return "other";
  std::string found;
  bool hit = false;
  NameTableReader reader(header, reinterpret_cast<const unsigned char*>(header) + header->names_offset,
                         header->names_capacity);
  reader.Poll([&](uint32_t id, std::string_view name) {
    if (!hit && id == name_id) {
      found.assign(name.data(), name.size());
      hit = true;
    }
  });
  return hit ? found : "name #" + std::to_string(name_id);
}

const char* SampleKindName(uint8_t kind) {
  switch (static_cast<SampleKind>(kind)) {
    case SampleKind::kReady:
      return "ready";
    case SampleKind::kTimer:
      return "timer";
    case SampleKind::kIo:
      return "io";
  }
  return "invalid";
}

}  // namespace

void RecordOverLimit(const Sample& sample, const RingHeader* header, uint32_t loop_id, LoopKind kind) {
  Store& store = TheStore();
  if (store.entries.size() >= kMaxStored) {
    ++store.missed;
    return;
  }
  try {
    store.entries.push_back({ResolveName(header, sample.name_id), sample.duration_ticks, loop_id, kind, sample.kind()});
  } catch (const std::bad_alloc&) {  // never an exception into the loop: count it as missed
    ++store.missed;
  }
}

PyObject* SetCallbackLimit(PyObject* /*module*/, PyObject* seconds) {
  if (seconds == Py_None) {
    g_callback_limit_ticks = UINT64_MAX;
    Py_RETURN_NONE;
  }
  if (PyBool_Check(seconds) || !(PyFloat_Check(seconds) || PyLong_Check(seconds))) {
    PyErr_Format(PyExc_TypeError, "set_callback_limit() takes seconds (an int or float) or None, not %.200s",
                 Py_TYPE(seconds)->tp_name);
    return nullptr;
  }
  const double value = PyFloat_AsDouble(seconds);
  if (value == -1.0 && PyErr_Occurred()) return nullptr;
  if (std::isnan(value) || value < 0) {
    PyErr_SetString(PyExc_ValueError, "the callback limit must be >= 0 seconds");
    return nullptr;
  }
  // Seconds -> ticks with the final calibration (the first call may wait for it: at most ~20 ms).
  // Rounded down, so a callback of exactly the limit may count as over it by less than one tick.
  const double ticks = value * 1e9 / TickClock::Calibration().ns_per_tick;
  g_callback_limit_ticks = ticks >= 1.8e19 ? UINT64_MAX : static_cast<uint64_t>(ticks);
  // Room for the whole store now, so that recording an offender only allocates its name.
  TheStore().entries.reserve(kMaxStored);
  Py_RETURN_NONE;
}

PyObject* TakeOverLimit(PyObject* /*module*/, PyObject* /*unused*/) {
  Store& store = TheStore();
  const double ns_per_tick = TickClock::Calibration().ns_per_tick;
  PyObject* list = PyList_New(0);
  if (list == nullptr) return nullptr;
  for (const OverLimit& e : store.entries) {
    PyObject* item = Py_BuildValue("{s:N,s:d,s:s,s:I,s:s}", "name",
                                   PyUnicode_DecodeUTF8(e.name.data(), static_cast<Py_ssize_t>(e.name.size()), "replace"),
                                   "seconds", static_cast<double>(e.duration_ticks) * ns_per_tick * 1e-9, "loop",
                                   e.loop_kind == LoopKind::kUvloop ? "uvloop" : "asyncio", "loop_id", e.loop_id, "kind",
                                   SampleKindName(e.sample_kind));
    if (item == nullptr || PyList_Append(list, item) != 0) {
      Py_XDECREF(item);
      Py_DECREF(list);
      return nullptr;  // the store is kept: nothing was handed over
    }
    Py_DECREF(item);
  }
  PyObject* result = Py_BuildValue("(NK)", list, static_cast<unsigned long long>(store.missed));
  if (result == nullptr) return nullptr;
  store.entries.clear();  // keeps the capacity reserved by SetCallbackLimit
  store.missed = 0;
  return result;
}

}  // namespace loopwatch::shim
