// See busy_time.h.
#include "busy_time.h"

#include <dlfcn.h>

#include <cmath>

#include "clock.h"
#include "loop_state.h"
#include "wrapper.h"

namespace loopwatch::shim {
namespace {

bool g_uvloop_layout_checked = false;
using UvNow = uint64_t (*)(const void*);
using UvMetricsIdleTime = uint64_t (*)(void*);
using UvLoopConfigure = int (*)(void*, int, ...);
UvMetricsIdleTime g_uv_metrics_idle_time = nullptr;
constexpr int kUvMetricsIdleTime = 1;               // UV_METRICS_IDLE_TIME in uv_loop_option
constexpr std::size_t kUvloopLoopPointerOffset = 24;  // uvloop 0.17 Loop: PyObject_HEAD, vtab, uvloop
constexpr uint64_t kUvBusyRefreshNs = 10'000'000;

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
  PyObject* result = PyObject_Vectorcall(w->target, args, nargsf, kwnames);
  busy.last_poll_return = NowTicks();
  return result;
}

}  // namespace

void SetUvloopLayoutChecked(bool checked) { g_uvloop_layout_checked = checked; }

void InstallAsyncioBusyProbe(LoopState* state, PyObject* loop) {
  state->busy.probe_tried = true;
  PyObject* selector = PyObject_GetAttrString(loop, "_selector");
  PyObject* select = selector != nullptr ? PyObject_GetAttrString(selector, "select") : nullptr;
  PyObject* wrapper = select != nullptr && WrapperTarget(select) == nullptr ? NewWrapper(select, state, BusySelectCall) : nullptr;
  if (wrapper != nullptr && PyObject_SetAttrString(selector, "select", wrapper) == 0) state->busy.available = true;
  Py_XDECREF(wrapper);
  Py_XDECREF(select);
  Py_XDECREF(selector);
  if (PyErr_Occurred()) PyErr_Clear();  // e.g. a proactor loop, or a selector with __slots__
}

void InstallUvloopBusyProbe(LoopState* state, PyObject* loop) {
  state->busy.probe_tried = true;
  if (!g_uvloop_layout_checked || Py_TYPE(loop)->tp_basicsize < static_cast<Py_ssize_t>(kUvloopLoopPointerOffset + sizeof(void*))) return;
  void* libuv = dlopen("libuv.so.1", RTLD_NOW | RTLD_NOLOAD);  // only if uvloop linked it dynamically
  if (libuv == nullptr) return;
  auto uv_now = reinterpret_cast<UvNow>(dlsym(libuv, "uv_now"));
  auto uv_loop_configure = reinterpret_cast<UvLoopConfigure>(dlsym(libuv, "uv_loop_configure"));
  g_uv_metrics_idle_time = reinterpret_cast<UvMetricsIdleTime>(dlsym(libuv, "uv_metrics_idle_time"));
  if (uv_now == nullptr || uv_loop_configure == nullptr || g_uv_metrics_idle_time == nullptr) return;
  void* uv_loop = *reinterpret_cast<void**>(reinterpret_cast<char*>(loop) + kUvloopLoopPointerOffset);
  if (uv_loop == nullptr) return;
  // Second check: libuv's notion of now through that pointer must be exactly loop.time() in ms.
  PyObject* time = PyObject_CallMethod(loop, "time", nullptr);
  const double seconds = time != nullptr ? PyFloat_AsDouble(time) : -1.0;
  Py_XDECREF(time);
  if (PyErr_Occurred()) PyErr_Clear();
  if (seconds < 0 || static_cast<double>(uv_now(uv_loop)) != std::round(seconds * 1000.0)) return;
  if (uv_loop_configure(uv_loop, kUvMetricsIdleTime) != 0) return;
  BusyState& busy = state->busy;
  busy.uv_loop = uv_loop;
  busy.uv_idle_base_ns = g_uv_metrics_idle_time(uv_loop);
  busy.uv_wall_base_ns = MonotonicNs();
  busy.available = true;
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
