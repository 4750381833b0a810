// See busy_time.h.
#include "busy_time.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <string>
#include <utility>

#include "clock.h"
#include "loop_state.h"
#include "wrapper.h"

namespace loopwatch::shim {
namespace {

std::string g_uvloop_library;  // uvloop.loop's extension file: libuv is in it or among its dependencies
using UvNow = uint64_t (*)(const void*);
using UvMetricsIdleTime = uint64_t (*)(void*);
using UvLoopConfigure = int (*)(void*, int, ...);
UvMetricsIdleTime g_uv_metrics_idle_time = nullptr;
constexpr int kUvMetricsIdleTime = 1;  // UV_METRICS_IDLE_TIME in uv_loop_option
constexpr uint64_t kUvBusyRefreshNs = 10'000'000;

// Reads one pointer at `address` without faulting: the kernel copies it into a pipe, or says EFAULT.
bool SafeReadPointer(const void* address, void** value) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return false;
  const bool ok = write(fds[1], address, sizeof(void*)) == static_cast<ssize_t>(sizeof(void*)) &&
                  read(fds[0], value, sizeof(void*)) == static_cast<ssize_t>(sizeof(void*));
  close(fds[0]);
  close(fds[1]);
  return ok;
}

// The uv_loop_t the uvloop Loop object owns, found without knowing the Loop's C layout: a word of the
// object that points to a uv_loop_t whose `data` (its first member, libuv's public API) is the Loop
// itself, as uvloop sets it. nullptr if no word qualifies.
void* FindUvLoop(PyObject* loop) {
  const Py_ssize_t size = Py_TYPE(loop)->tp_basicsize;
  auto* words = reinterpret_cast<void* const*>(loop);
  for (Py_ssize_t i = sizeof(PyObject) / sizeof(void*); i < size / static_cast<Py_ssize_t>(sizeof(void*)); ++i) {
    void* candidate = words[i];
    void* data = nullptr;
    if (candidate != nullptr && candidate != loop && SafeReadPointer(candidate, &data) && data == loop) return candidate;
  }
  return nullptr;
}

void StoreBusy(LoopState* state) {
  if (RingFile* ring = state->Ring()) {
    // Relaxed: a statistic only this writer stores; the agent mirrors whatever it reads.
    ring->header()->busy_ticks.store(state->busy.busy_ticks, std::memory_order_relaxed);
  }
}

PyObject* BusySelectCall(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  auto* w = reinterpret_cast<Wrapper*>(self);
  LoopState* state = w->state;
  BusyState& busy = state->busy;
  if (busy.last_poll_return != 0) {
    busy.busy_ticks += NowTicks() - busy.last_poll_return;
    StoreBusy(state);
  }
  PyObject* result = CallWrapped(w, args, nargsf, kwnames);
  busy.last_poll_return = NowTicks();
  return result;
}

}  // namespace

void SetUvloopLibrary(std::string path) { g_uvloop_library = std::move(path); }

void InstallAsyncioBusyProbe(LoopState* state, PyObject* loop) {
  state->busy.probe_tried = true;
  PyObject* selector = PyObject_GetAttrString(loop, "_selector");
  PyObject* select = selector != nullptr ? PyObject_GetAttrString(selector, "select") : nullptr;
  // A method wrapper: the selector's dict holds it, and it holds the selector only weakly (no cycle).
  PyObject* wrapper = select != nullptr && WrapperTarget(select) == nullptr ? NewMethodWrapper(select, state, BusySelectCall) : nullptr;
  if (wrapper != nullptr && PyObject_SetAttrString(selector, "select", wrapper) == 0) {
    state->busy.available = true;
    state->busy.detail = "time outside selector.select";
  } else {
    state->busy.detail = "off: the loop's selector.select cannot be wrapped (no selector, or one without attributes)";
  }
  Py_XDECREF(wrapper);
  Py_XDECREF(select);
  Py_XDECREF(selector);
  if (PyErr_Occurred()) PyErr_Clear();  // e.g. a proactor loop, or a selector with __slots__
}

void InstallUvloopBusyProbe(LoopState* state, PyObject* loop) {
  BusyState& busy = state->busy;
  busy.probe_tried = true;
  // Debian's uvloop links libuv.so.1; PyPI's wheels link libuv into uvloop.loop and export it. A
  // handle of uvloop.loop finds the symbols in either (dlsym searches a library's dependencies too).
  void* library = g_uvloop_library.empty() ? nullptr : dlopen(g_uvloop_library.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (library == nullptr) library = dlopen("libuv.so.1", RTLD_NOW | RTLD_NOLOAD);
  if (library == nullptr) {
    busy.detail = "off: libuv is not loaded where loopwatch can find it";
    return;
  }
  auto uv_now = reinterpret_cast<UvNow>(dlsym(library, "uv_now"));
  auto uv_loop_configure = reinterpret_cast<UvLoopConfigure>(dlsym(library, "uv_loop_configure"));
  g_uv_metrics_idle_time = reinterpret_cast<UvMetricsIdleTime>(dlsym(library, "uv_metrics_idle_time"));
  if (uv_now == nullptr || uv_loop_configure == nullptr || g_uv_metrics_idle_time == nullptr) {
    busy.detail = "off: libuv exports no uv_metrics_idle_time (libuv older than 1.39)";
    return;
  }
  void* uv_loop = FindUvLoop(loop);
  if (uv_loop == nullptr) {
    busy.detail = "off: the loop's uv_loop_t was not found (its data pointer is not the Loop)";
    return;
  }
  // Second, independent check: libuv's notion of now through that pointer is loop.time() in ms.
  PyObject* time = PyObject_CallMethod(loop, "time", nullptr);
  const double seconds = time != nullptr ? PyFloat_AsDouble(time) : -1.0;
  Py_XDECREF(time);
  if (PyErr_Occurred()) PyErr_Clear();
  if (seconds < 0 || static_cast<double>(uv_now(uv_loop)) != std::round(seconds * 1000.0)) {
    busy.detail = "off: libuv's clock through the found uv_loop_t disagrees with loop.time()";
    return;
  }
  if (uv_loop_configure(uv_loop, kUvMetricsIdleTime) != 0) {
    busy.detail = "off: uv_loop_configure(UV_METRICS_IDLE_TIME) failed";
    return;
  }
  busy.uv_loop = uv_loop;
  busy.uv_idle_base_ns = g_uv_metrics_idle_time(uv_loop);
  busy.uv_wall_base_ns = MonotonicNs();
  busy.available = true;
  busy.detail = "libuv idle time (uv_metrics_idle_time)";
}

void UpdateUvloopBusy(LoopState* state, uint64_t now_ticks) {
  BusyState& busy = state->busy;
  const uint64_t wall = MonotonicNs() - busy.uv_wall_base_ns;
  const uint64_t idle = g_uv_metrics_idle_time(busy.uv_loop) - busy.uv_idle_base_ns;
  const double ns_per_tick = TickClock::Calibration().ns_per_tick;
  busy.busy_ticks = wall > idle ? static_cast<uint64_t>(static_cast<double>(wall - idle) / ns_per_tick) : 0;
  busy.next_update = now_ticks + static_cast<uint64_t>(kUvBusyRefreshNs / ns_per_tick);
  StoreBusy(state);
}

}  // namespace loopwatch::shim
