// The uvloop hook. uvloop's handles are Cython and cannot be patched, but uvloop.Loop is a Python
// subclass of the Cython loop, so C methods installed on it shadow call_soon, call_soon_threadsafe,
// call_later and call_at. Each wraps the callback in a Trampoline: a small GC-tracked C object that
// remembers the enqueue (or due) time, and when uvloop calls it — inside the handle's context, on
// the loop thread — times the real callback and records the sample. Task steps and future callbacks
// reach the loop through call_soon (the C Task calls loop.call_soon), so they are covered too.
// Handle count on uvloop = trampolines created for the loop and not yet run or discarded.
// Trampolines are freelisted, so scheduling a callback allocates nothing in steady state.
#include "uvloop_hook.h"

#include <cmath>
#include <cstring>

#include "callback_key.h"
#include "clock.h"
#include "current_sample.h"
#include "inflight.h"
#include "loop_state.h"
#include "wrapper.h"

namespace loopwatch::shim {
namespace {

using protocol::LoopKind;
using protocol::Sample;
using protocol::SampleKind;

// Starts like a Wrapper (wrapper.h), so it shares its forwarding slots; adds timing fields.
struct Trampoline {
  PyObject_HEAD
  vectorcallfunc vectorcall;
  PyObject* callback;
  LoopState* state;     // retained; nullptr when the loop cannot be tracked
  uint64_t due;         // ready: enqueue time in ticks; timer: due time in CLOCK_MONOTONIC ns
  SampleKind kind;
  bool counted;         // still included in state->pending
};
static_assert(offsetof(Trampoline, vectorcall) == offsetof(Wrapper, vectorcall));
static_assert(offsetof(Trampoline, callback) == offsetof(Wrapper, target));
static_assert(offsetof(Trampoline, state) == offsetof(Wrapper, state));

// A method of the Cython base loop. When it is a METH_FASTCALL|METH_KEYWORDS method descriptor (as
// Cython makes them), we call its C function directly: `self` is a uvloop.Loop, so the descriptor's
// per-call type check would only repeat what install already knows.
struct BaseMethod {
  PyObject* descriptor = nullptr;
  _PyCFunctionFastWithKeywords direct = nullptr;

  PyObject* Call(PyObject* const* stack_with_self, Py_ssize_t nargs, PyObject* kwnames) const {
    if (direct != nullptr) return direct(stack_with_self[0], stack_with_self + 1, nargs, kwnames);
    return PyObject_Vectorcall(descriptor, stack_with_self, static_cast<size_t>(1 + nargs), kwnames);
  }
  static BaseMethod Of(PyObject* base, const char* name) {
    BaseMethod m;
    m.descriptor = PyObject_GetAttrString(base, name);
    if (m.descriptor != nullptr && Py_IS_TYPE(m.descriptor, &PyMethodDescr_Type)) {
      PyMethodDef* def = reinterpret_cast<PyMethodDescrObject*>(m.descriptor)->d_method;
      if ((def->ml_flags & (METH_FASTCALL | METH_KEYWORDS | METH_METHOD)) == (METH_FASTCALL | METH_KEYWORDS)) {
        m.direct = reinterpret_cast<_PyCFunctionFastWithKeywords>(reinterpret_cast<void (*)()>(def->ml_meth));
      }
    }
    return m;
  }
};

struct UvloopHook {
  PyObject* loop_type = nullptr;  // uvloop.Loop (the Python subclass)
  BaseMethod base_call_soon;
  BaseMethod base_call_soon_threadsafe;
  BaseMethod base_call_later;
  BaseMethod base_call_at;
  bool installed = false;
};
UvloopHook g_uv;

extern PyTypeObject g_trampoline_type;

void Uncount(Trampoline* t) {
  if (t->counted && t->state != nullptr) --t->state->pending;
  t->counted = false;
}

PyObject* TrampolineCall(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  auto* t = reinterpret_cast<Trampoline*>(self);
  Uncount(t);
  LoopState* state = t->state;
  RingFile* ring = state != nullptr ? state->RecordingRing() : nullptr;  // nullptr while paused
  if (ring == nullptr) return PyObject_Vectorcall(t->callback, args, nargsf, kwnames);
  TimedCallback timed;
  timed.state = state;
  Sample& sample = timed.sample;
  sample.name_id = state->NameId(t->callback);
  sample.handles_kind = Sample::PackHandlesKind(static_cast<uint32_t>(state->pending < 0 ? 0 : state->pending), t->kind);
  // The callback may drop the last reference to this trampoline's handle: keep what we use.
  PyObject* callback = t->callback;
  Py_INCREF(callback);
  // A timer's due time stays in monotonic ns until now: converting needs the calibration, which is
  // final only once a ring exists (as it does here), never at scheduling time.
  const uint64_t due = t->due == 0 ? 0 : t->kind == SampleKind::kTimer ? MonoNsToTicks(t->due) : t->due;
  PyObject* result;
  {
    CurrentCallbackScope current(&timed);
    sample.start_ticks = NowTicks();
    timed.inflight = BeginInflight(ring->header(), sample.name_id, sample.start_ticks);
    result = PyObject_Vectorcall(callback, args, nargsf, kwnames);
    sample.duration_ticks = NowTicks() - sample.start_ticks - timed.nested_ticks;
  }
  Py_DECREF(callback);
  sample.lag_ticks = due == 0 ? protocol::kLagUnknown : sample.start_ticks > due ? sample.start_ticks - due : 0;
  if (state->FinishCallback(timed) && state->busy.uv_loop != nullptr &&
      sample.start_ticks + sample.duration_ticks >= state->busy.next_update) {
    UpdateUvloopBusy(state, sample.start_ticks + sample.duration_ticks);
  }
  return result;
}

// Freed trampolines are kept for reuse (GIL-protected): a loop running at full speed allocates
// none. Bounded so a burst of pending callbacks does not pin memory afterwards.
constexpr int kFreeListMax = 256;
Trampoline* g_free_list[kFreeListMax];
int g_free_count = 0;

void TrampolineDealloc(PyObject* self) {
  auto* t = reinterpret_cast<Trampoline*>(self);
  PyObject_GC_UnTrack(self);
  Uncount(t);
  if (t->state != nullptr) t->state->Release();
  t->state = nullptr;
  Py_CLEAR(t->callback);
  if (g_free_count < kFreeListMax && Py_IS_TYPE(self, &g_trampoline_type)) {
    g_free_list[g_free_count++] = t;
    return;
  }
  PyObject_GC_Del(self);
}

// Formatting code (asyncio's _format_callback_source, reprs in exception reports, inspect.unwrap)
// sees the real callback: the forwarding slots read attributes and repr from it.
PyTypeObject g_trampoline_type = [] {
  PyTypeObject t{PyVarObject_HEAD_INIT(nullptr, 0)};
  t.tp_name = "loopwatch._shim.Trampoline";
  t.tp_basicsize = sizeof(Trampoline);
  SetForwardingSlots(t);
  t.tp_dealloc = TrampolineDealloc;
  t.tp_doc = "loopwatch: times one uvloop callback";
  return t;
}();

PyObject* NewTrampoline(LoopState* state, PyObject* callback, uint64_t due, SampleKind kind) {
  Trampoline* t;
  if (g_free_count > 0) {
    t = g_free_list[--g_free_count];
    _Py_NewReference(reinterpret_cast<PyObject*>(t));  // type and GC header are still in place
  } else {
    t = PyObject_GC_New(Trampoline, &g_trampoline_type);
    if (t == nullptr) return nullptr;
  }
  t->vectorcall = TrampolineCall;
  t->callback = Py_NewRef(callback);
  t->state = state;
  if (t->state != nullptr) {
    t->state->Retain();
    ++t->state->pending;
  }
  t->counted = t->state != nullptr;
  t->due = due;
  t->kind = kind;
  PyObject_GC_Track(reinterpret_cast<PyObject*>(t));
  return reinterpret_cast<PyObject*>(t);
}

// Calls `base(self, <args with args[callback_index] replaced by a trampoline>, **kw)`.
// Anything unusual (too few args, a non-callable) goes to uvloop untouched so it raises as usual.
PyObject* CallThrough(const BaseMethod& base, PyObject* self, LoopState* state, PyObject* const* args, size_t nargsf,
                      PyObject* kwnames, Py_ssize_t callback_index, uint64_t due, SampleKind kind) {
  const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  const Py_ssize_t nkw = kwnames != nullptr ? PyTuple_GET_SIZE(kwnames) : 0;
  const Py_ssize_t total = 1 + nargs + nkw;
  PyObject* small[8];
  PyObject** stack = total <= 8 ? small : static_cast<PyObject**>(PyMem_Malloc(sizeof(PyObject*) * total));
  if (stack == nullptr) return PyErr_NoMemory();
  stack[0] = self;
  std::memcpy(stack + 1, args, sizeof(PyObject*) * (nargs + nkw));
  PyObject* trampoline = nullptr;
  // Already wrapped: uvloop's own call_at calls self.call_later, which lands here again.
  if (nargs > callback_index && Py_TYPE(args[callback_index]) != &g_trampoline_type &&
      PyCallable_Check(args[callback_index]) && !PyCoro_CheckExact(args[callback_index])) {
    trampoline = NewTrampoline(state, args[callback_index], due, kind);
    if (trampoline == nullptr) {
      if (stack != small) PyMem_Free(stack);
      return nullptr;
    }
    stack[1 + callback_index] = trampoline;
  }
  PyObject* result = base.Call(stack, nargs, kwnames);
  Py_XDECREF(trampoline);
  if (stack != small) PyMem_Free(stack);
  return result;
}

// call_soon, call_later and call_at belong to the loop thread (unlike call_soon_threadsafe), so
// they may touch the uv_loop: the busy probe is installed from them, once per loop.
LoopState* LoopThreadState(PyObject* loop) {
  LoopState* state = CachedStateForLoop(loop, LoopKind::kUvloop);
  if (state != nullptr && !state->busy.probe_tried) InstallUvloopBusyProbe(state, loop);
  return state;
}

PyObject* LoopCallSoon(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  return CallThrough(g_uv.base_call_soon, self, LoopThreadState(self), args, nargsf, kwnames, 0, NowTicks(),
                     SampleKind::kReady);
}

PyObject* LoopCallSoonThreadsafe(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  return CallThrough(g_uv.base_call_soon_threadsafe, self, CachedStateForLoop(self, LoopKind::kUvloop), args, nargsf,
                     kwnames, 0, NowTicks(), SampleKind::kReady);
}

// A timer's due time in CLOCK_MONOTONIC ns (0 if unknown); uvloop itself validates the argument.
uint64_t DueNs(PyObject* const* args, size_t nargsf, bool relative) {
  if (PyVectorcall_NARGS(nargsf) == 0) return 0;
  const double seconds = PyFloat_AsDouble(args[0]);
  if (PyErr_Occurred()) {
    PyErr_Clear();
    return 0;
  }
  if (!std::isfinite(seconds)) return 0;
  return relative ? MonotonicNs() + SecondsToNs(seconds) : SecondsToNs(seconds);
}

PyObject* LoopCallLater(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  return CallThrough(g_uv.base_call_later, self, LoopThreadState(self), args, nargsf, kwnames, 1,
                     DueNs(args, nargsf, /*relative=*/true), SampleKind::kTimer);
}

PyObject* LoopCallAt(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  return CallThrough(g_uv.base_call_at, self, LoopThreadState(self), args, nargsf, kwnames, 1,
                     DueNs(args, nargsf, /*relative=*/false), SampleKind::kTimer);
}

#define LW_FASTCALL_KW(fn) reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fn))
PyMethodDef g_methods[] = {
    {"call_soon", LW_FASTCALL_KW(LoopCallSoon), METH_FASTCALL | METH_KEYWORDS, "loopwatch: timed call_soon"},
    {"call_soon_threadsafe", LW_FASTCALL_KW(LoopCallSoonThreadsafe), METH_FASTCALL | METH_KEYWORDS,
     "loopwatch: timed call_soon_threadsafe"},
    {"call_later", LW_FASTCALL_KW(LoopCallLater), METH_FASTCALL | METH_KEYWORDS, "loopwatch: timed call_later"},
    {"call_at", LW_FASTCALL_KW(LoopCallAt), METH_FASTCALL | METH_KEYWORDS, "loopwatch: timed call_at"},
};
#undef LW_FASTCALL_KW

}  // namespace

bool InitUvloopHook() { return PyType_Ready(&g_trampoline_type) == 0; }

bool IsUvloopLoop(PyObject* loop) {
  return g_uv.loop_type != nullptr && PyObject_TypeCheck(loop, reinterpret_cast<PyTypeObject*>(g_uv.loop_type));
}

PyObject* InstallUvloopHook(PyObject* /*module*/, PyObject* loop_type) {
  if (!PyType_Check(loop_type)) {
    PyErr_SetString(PyExc_TypeError, "install_uvloop(uvloop.Loop)");
    return nullptr;
  }
  if (g_uv.installed) Py_RETURN_FALSE;
  if (!InitCallbackKeys()) return nullptr;
  auto* type = reinterpret_cast<PyTypeObject*>(loop_type);
  if (type->tp_base == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "uvloop.Loop has no base loop class");
    return nullptr;
  }
  // The Cython loop's own methods, called after the callback is wrapped.
  auto* base = reinterpret_cast<PyObject*>(type->tp_base);
  UvloopHook h;
  h.base_call_soon = BaseMethod::Of(base, "call_soon");
  h.base_call_soon_threadsafe = BaseMethod::Of(base, "call_soon_threadsafe");
  h.base_call_later = BaseMethod::Of(base, "call_later");
  h.base_call_at = BaseMethod::Of(base, "call_at");
  if (h.base_call_soon.descriptor == nullptr || h.base_call_soon_threadsafe.descriptor == nullptr ||
      h.base_call_later.descriptor == nullptr || h.base_call_at.descriptor == nullptr) {
    return nullptr;
  }
  h.loop_type = Py_NewRef(loop_type);
  h.installed = true;
  g_uv = h;
  for (PyMethodDef& def : g_methods) {
    PyObject* descr = PyDescr_NewMethod(type, &def);
    if (descr == nullptr || PyObject_SetAttrString(loop_type, def.ml_name, descr) != 0) {
      Py_XDECREF(descr);
      UninstallUvloopHook(nullptr, nullptr);
      return nullptr;
    }
    Py_DECREF(descr);
  }
  Py_RETURN_TRUE;
}

PyObject* UninstallUvloopHook(PyObject* /*module*/, PyObject* /*unused*/) {
  if (!g_uv.installed) Py_RETURN_FALSE;
  // Deleting our attributes uncovers the Cython base class's methods again.
  for (PyMethodDef& def : g_methods) {
    if (PyObject_DelAttrString(g_uv.loop_type, def.ml_name) != 0) PyErr_Clear();
  }
  g_uv.installed = false;
  Py_RETURN_TRUE;
}

}  // namespace loopwatch::shim
