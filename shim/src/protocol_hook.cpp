// Protocol callbacks are I/O: uvloop calls data_received & co. straight from libuv, never through a
// handle, so no loop hook sees them. The Python side wraps each protocol factory given to
// create_server/create_connection/...; the first instance of each protocol class it makes has that
// class's callbacks replaced, once, by TimedMethods: C callables that bind like functions (so
// `protocol.data_received` is an ordinary bound method whose __func__ is the TimedMethod) and time
// the original function. Nothing is stored on the instance: a bound method references the instance
// exactly as stock's does, so no reference cycle is made and the protocol, its transport and their
// buffers are freed when the program drops them, as without loopwatch.
//
// Called inside a timed handle (asyncio's _read_ready), a TimedMethod renames that sample; called
// from libuv directly, it records an I/O sample of its own into the ring of the loop running on this
// thread. Per-connection work is one lookup per callback name; per-callback work is only this C code.
// Everything here runs with the GIL held, on the loop thread (the class patch on whichever thread
// made the protocol).
#include "protocol_hook.h"

#include <cstring>
#include <iterator>

#include "clock.h"
#include "current_sample.h"
#include "inflight.h"
#include "loop_state.h"
#include "py_compat.h"
#include "uvloop_hook.h"
#include "wrapper.h"

namespace loopwatch::shim {

thread_local TimedCallback* t_current_callback __attribute__((tls_model("initial-exec"))) = nullptr;

namespace {

using protocol::Sample;
using protocol::SampleKind;

constexpr const char* kProtocolCallbacks[] = {
    "connection_made", "data_received", "eof_received", "connection_lost", "buffer_updated", "datagram_received",
    "error_received",  "pause_writing", "resume_writing",
};

// _asyncio._get_running_loop, called through its C function: the loop running on this thread.
PyCFunction g_get_running_loop = nullptr;
PyObject* g_get_running_loop_self = nullptr;

// The state of the loop running on this thread; nullptr if none (or it cannot be tracked).
LoopState* RunningLoopState() {
  if (g_get_running_loop == nullptr) return nullptr;
  PyObject* loop = g_get_running_loop(g_get_running_loop_self, nullptr);  // new reference, or None
  if (loop == nullptr) {
    PyErr_Clear();
    return nullptr;
  }
  LoopState* state = loop == Py_None ? nullptr
                                     : CachedStateForLoop(loop, IsUvloopLoop(loop) ? protocol::LoopKind::kUvloop
                                                                                   : protocol::LoopKind::kAsyncio);
  Py_DECREF(loop);
  return state;
}

// args[0] is the protocol (a bound method or the interpreter's method call passes it first).
PyObject* TimedMethodCall(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  PyObject* function = reinterpret_cast<Wrapper*>(self)->target;
  if (TimedCallback* enclosing = t_current_callback) {
    // Inside a timed handle on this thread (which already decided about pausing): that sample is
    // this callback's time, and the in-flight slot it holds now names this callback. A protocol
    // method called from another one (super(), a proxy forwarding data) leaves the name as it is.
    if (!enclosing->named_by_protocol && enclosing->state != nullptr && enclosing->state->Ring() != nullptr) {
      enclosing->named_by_protocol = true;
      Sample& outer = enclosing->sample;
      outer.name_id = enclosing->state->NameId(function);
      outer.handles_kind = Sample::PackHandlesKind(outer.handles(), SampleKind::kIo);
      if (enclosing->inflight != nullptr) RenameInflight(enclosing->inflight, outer.name_id);
    }
    return PyObject_Vectorcall(function, args, nargsf, kwnames);
  }
  LoopState* state = RunningLoopState();
  RingFile* ring = state != nullptr ? state->RecordingRing() : nullptr;  // nullptr while paused
  if (ring == nullptr) return PyObject_Vectorcall(function, args, nargsf, kwnames);
  TimedCallback timed;
  timed.state = state;
  timed.named_by_protocol = true;
  Sample& sample = timed.sample;
  sample.name_id = state->NameId(function);
  sample.handles_kind = Sample::PackHandlesKind(static_cast<uint32_t>(state->pending < 0 ? 0 : state->pending), SampleKind::kIo);
  sample.lag_ticks = protocol::kLagUnknown;  // when the bytes arrived is the kernel's secret
  PyObject* result;
  {
    CurrentCallbackScope scope(&timed);
    sample.start_ticks = NowTicks();
    timed.inflight = BeginInflight(ring->header(), sample.name_id, sample.start_ticks);
    result = PyObject_Vectorcall(function, args, nargsf, kwnames);
    sample.duration_ticks = NowTicks() - sample.start_ticks - timed.nested_ticks;
  }
  state->FinishCallback(timed);
  return result;
}

// Binds like a function: on the class it is itself, on an instance a bound method of it.
PyObject* TimedMethodGet(PyObject* self, PyObject* instance, PyObject* /*owner*/) {
  if (instance == nullptr || instance == Py_None) return Py_NewRef(self);
  return PyMethod_New(self, instance);
}

// Forwards attributes, repr and __wrapped__ to the function (wrapper.h), so inspect, pickling of the
// class by reference and formatting code see the original. METHOD_DESCRIPTOR: `obj.method(...)` calls
// it with obj first, without making a bound method, as for a function.
PyTypeObject g_timed_method_type = [] {
  PyTypeObject t = WrapperLikeType("loopwatch._shim.TimedMethod", "loopwatch: a protocol callback, timed");
  t.tp_flags |= Py_TPFLAGS_METHOD_DESCRIPTOR;
  t.tp_descr_get = TimedMethodGet;
  return t;
}();

// Functions that bind their instance as the first argument, as TimedMethod does: Python functions,
// methods of C base classes, and Cython's functions.
bool BindsLikeAFunction(PyObject* raw) {
  if (PyFunction_Check(raw) || Py_IS_TYPE(raw, &PyMethodDescr_Type)) return true;
  const char* name = Py_TYPE(raw)->tp_name;
  const char* dot = std::strrchr(name, '.');
  return std::strcmp(dot != nullptr ? dot + 1 : name, "cython_function_or_method") == 0;
}

// On the first protocol (not at module import: _asyncio imports asyncio).
bool InitRunningLoopLookup() {
  static bool ready = false;
  if (ready) return true;
  PyObject* asyncio_c = PyImport_ImportModule("_asyncio");
  PyObject* get = asyncio_c != nullptr ? PyObject_GetAttrString(asyncio_c, "_get_running_loop") : nullptr;
  Py_XDECREF(asyncio_c);
  if (get == nullptr) return false;
  if (PyCFunction_Check(get) && (PyCFunction_GET_FLAGS(get) & METH_NOARGS) != 0) {
    g_get_running_loop = PyCFunction_GET_FUNCTION(get);
    g_get_running_loop_self = PyCFunction_GET_SELF(get);  // the _asyncio module, kept by `get`
    // `get` is kept for the process's life: the function and its module stay valid.
  } else {
    Py_DECREF(get);
    PyErr_SetString(PyExc_RuntimeError, "_asyncio._get_running_loop is not the C function loopwatch expects");
    return false;
  }
  ready = true;
  return true;
}

}  // namespace

PyTypeObject* ReadyTimedMethodType() {
  return PyType_Ready(&g_timed_method_type) == 0 ? &g_timed_method_type : nullptr;
}

PyObject* TimedMethodTarget(PyObject* object) {
  if (PyMethod_Check(object)) object = PyMethod_GET_FUNCTION(object);
  return Py_IS_TYPE(object, &g_timed_method_type) ? reinterpret_cast<Wrapper*>(object)->target : nullptr;
}

PyObject* InstrumentProtocol(PyObject* /*module*/, PyObject* protocol) {
  if (!InitRunningLoopLookup()) return nullptr;
  auto* type = Py_TYPE(protocol);
  const bool mutable_class = (type->tp_flags & Py_TPFLAGS_IMMUTABLETYPE) == 0;
  bool patched_now = false;
  long timed = 0, untimed = 0;
  static PyObject* keys[std::size(kProtocolCallbacks)] = {};  // interned once, kept for the process's life
  for (std::size_t i = 0; i < std::size(kProtocolCallbacks); ++i) {
    if (keys[i] == nullptr && (keys[i] = PyUnicode_InternFromString(kProtocolCallbacks[i])) == nullptr) return nullptr;
    PyObject* key = keys[i];
    PyObject* raw = TypeLookupRaw(type, key);  // borrowed: the class attribute, unbound
    if (raw != nullptr && !Py_IS_TYPE(raw, &g_timed_method_type) && mutable_class && BindsLikeAFunction(raw)) {
      PyObject* method = NewWrapperOf(&g_timed_method_type, raw, nullptr, TimedMethodCall);
      const int rc = method != nullptr ? PyObject_SetAttr(reinterpret_cast<PyObject*>(type), key, method) : -1;
      Py_XDECREF(method);
      if (rc != 0) {  // e.g. a class that refuses attributes: its callbacks stay unattributed
        PyErr_Clear();
      } else {
        patched_now = true;
      }
    }
    // Timed on this instance if its attribute is our method bound to it (an instance attribute of
    // the same name would shadow the class's).
    if (raw != nullptr) {
      PyObject* attr = PyObject_GetAttr(protocol, key);
      if (attr == nullptr) {
        PyErr_Clear();
      } else {
        ++(TimedMethodTarget(attr) != nullptr ? timed : untimed);
        Py_DECREF(attr);
      }
    }
  }
  return Py_BuildValue("(llO)", timed, untimed, patched_now ? Py_True : Py_False);
}

}  // namespace loopwatch::shim
