// The asyncio hook: C++ replacements for four methods of asyncio (CPython 3.10-3.13), installed on the
// classes themselves so every loop built on BaseEventLoop runs them with no Python code per callback.
//
//   Handle._run            runs the callback in its context exactly as the stock method does (same
//                          exception handling, KeyboardInterrupt/SystemExit propagate) and records a
//                          sample around it. Every handle passes here: call_soon, timers, Task steps,
//                          future callbacks, threadsafe calls, selector I/O and signal handlers.
//   BaseEventLoop._call_soon   same as stock, plus an enqueue stamp (ready lag = run - enqueue).
//   BaseEventLoop._add_callback  same as stock, plus an enqueue stamp for I/O handles.
//   BaseEventLoop.run_forever    calls the stock one, then lets go of the loop's cached containers.
//
// Timer lag is start - TimerHandle._when (loop.time() is CLOCK_MONOTONIC seconds, converted to ticks).
// The stock methods stay reachable: uninstall() puts them back. The Python side refuses to install
// on a CPython minor version whose asyncio these were not checked against.
#include "asyncio_hook.h"  // Python.h first

#include <cstring>

#include "callback_key.h"
#include "clock.h"
#include "current_sample.h"
#include "enqueue_stamps.h"
#include "inflight.h"
#include "loop_state.h"
#include "py_compat.h"

namespace loopwatch::shim {
namespace {

using protocol::LoopKind;
using protocol::Sample;
using protocol::SampleKind;

struct AsyncioHook {
  PyTypeObject* handle_type = nullptr;
  PyTypeObject* timer_type = nullptr;
  PyObject* loop_type = nullptr;  // BaseEventLoop
  PyObject* format_callback_source = nullptr;
  bool format_takes_debug = false;  // 3.13+: _format_callback_source(func, args, *, debug)
  PyObject* stock_run = nullptr;
  PyObject* stock_call_soon = nullptr;
  PyObject* stock_add_callback = nullptr;
  PyObject* stock_run_forever = nullptr;
  Py_ssize_t off_callback = -1, off_args = -1, off_context = -1, off_loop = -1, off_cancelled = -1,
             off_when = -1;
  PyObject *s_ready = nullptr, *s_scheduled = nullptr, *s_append = nullptr;
  PyTypeObject* deque_type = nullptr;  // collections.deque
  PyObject* deque_append = nullptr;    // collections.deque.append (a method descriptor)
  bool installed = false;
};
AsyncioHook g_hook;

inline PyObject* Slot(PyObject* self, Py_ssize_t offset) {  // borrowed; nullptr if unset
  return *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(self) + offset);
}

// The loop attribute `name`, cached in `*slot`; borrowed, nullptr (no error set) if unavailable.
PyObject* CachedLoopAttr(PyObject** slot, PyObject* loop, PyObject* name) {
  if (*slot == nullptr || Py_REFCNT(*slot) == 1) {
    Py_XSETREF(*slot, PyObject_GetAttr(loop, name));
    if (*slot == nullptr) PyErr_Clear();
  }
  return *slot;
}

uint32_t CountHandles(LoopState* state, PyObject* loop) {
  Py_ssize_t count = 0;
  PyObject* ready = CachedLoopAttr(&state->ready_queue, loop, g_hook.s_ready);
  if (ready != nullptr) {
    const Py_ssize_t n = PyObject_Size(ready);  // deque: its sq_length, no lookup
    if (n > 0) count += n;
    else if (n < 0) PyErr_Clear();
  }
  PyObject* scheduled = CachedLoopAttr(&state->scheduled_heap, loop, g_hook.s_scheduled);
  if (scheduled != nullptr && PyList_Check(scheduled)) count += PyList_GET_SIZE(scheduled);
  return static_cast<uint32_t>(count);
}

// format_helpers._format_callback_source(callback, args[, debug=self._loop.get_debug()]).
PyObject* FormatCallbackSource(PyObject* self, PyObject* callback, PyObject* args) {
  if (!g_hook.format_takes_debug) return PyObject_CallFunctionObjArgs(g_hook.format_callback_source, callback, args, nullptr);
  PyObject* loop = PyObject_GetAttrString(self, "_loop");
  PyObject* debug = loop != nullptr ? PyObject_CallMethod(loop, "get_debug", nullptr) : nullptr;
  Py_XDECREF(loop);
  if (debug == nullptr) return nullptr;
  PyObject* kwnames = Py_BuildValue("(s)", "debug");
  PyObject* stack[3] = {callback, args, debug};
  PyObject* source = kwnames != nullptr ? PyObject_Vectorcall(g_hook.format_callback_source, stack, 2, kwnames) : nullptr;
  Py_XDECREF(kwnames);
  Py_DECREF(debug);
  return source;
}

// The `except BaseException as exc:` branch of the stock Handle._run, with `exc` as the handled
// exception while it runs. Returns nullptr (error set) if the exception handler itself raised.
PyObject* ReportCallbackException(PyObject* self, PyObject* exc) {
  PyObject* callback = PyObject_GetAttrString(self, "_callback");
  PyObject* args = callback != nullptr ? PyObject_GetAttrString(self, "_args") : nullptr;
  PyObject* source = args != nullptr ? FormatCallbackSource(self, callback, args) : nullptr;
  Py_XDECREF(callback);
  Py_XDECREF(args);
  if (source == nullptr) return nullptr;
  PyObject* message = PyUnicode_FromFormat("Exception in callback %U", source);
  Py_DECREF(source);
  if (message == nullptr) return nullptr;
  PyObject* context = Py_BuildValue("{s:N,s:O,s:O}", "message", message, "exception", exc, "handle", self);
  if (context == nullptr) return nullptr;
  PyObject* source_traceback = PyObject_GetAttrString(self, "_source_traceback");
  int truthy = source_traceback != nullptr ? PyObject_IsTrue(source_traceback) : -1;
  if (truthy > 0) truthy = PyDict_SetItemString(context, "source_traceback", source_traceback) == 0 ? 1 : -1;
  Py_XDECREF(source_traceback);
  PyObject* result = nullptr;
  if (truthy >= 0) {
    PyObject* loop = PyObject_GetAttrString(self, "_loop");
    if (loop != nullptr) {
      result = PyObject_CallMethod(loop, "call_exception_handler", "O", context);
      Py_DECREF(loop);
    }
  }
  Py_DECREF(context);
  return result;
}

// `context.run(callback, *args)` for a context that is not a contextvars.Context, as Python runs it.
PyObject* CallContextRun(PyObject* context, PyObject* callback, PyObject* args) {
  PyObject* run = PyObject_GetAttrString(context, "run");
  if (run == nullptr) return nullptr;
  PyObject* rest = PySequence_Tuple(args);
  PyObject* head = rest != nullptr ? PyTuple_Pack(1, callback) : nullptr;
  PyObject* all = head != nullptr ? PySequence_Concat(head, rest) : nullptr;
  PyObject* result = all != nullptr ? PyObject_Call(run, all, nullptr) : nullptr;
  Py_XDECREF(all);
  Py_XDECREF(head);
  Py_XDECREF(rest);
  Py_DECREF(run);
  return result;
}

PyObject* HandleRun(PyObject* self, PyObject* /*unused*/) {
  PyObject* callback = Slot(self, g_hook.off_callback);
  PyObject* args = Slot(self, g_hook.off_args);
  PyObject* context = Slot(self, g_hook.off_context);
  PyObject* loop = Slot(self, g_hook.off_loop);
  if (callback == nullptr || args == nullptr || context == nullptr || loop == nullptr) {
    return PyObject_CallOneArg(g_hook.stock_run, self);  // a half-built handle: stock semantics
  }
  // The callback may cancel its own handle (which clears these slots): hold them for the call.
  Py_INCREF(callback);
  Py_INCREF(args);
  Py_INCREF(context);

  LoopState* state = CachedStateForLoop(loop, LoopKind::kAsyncio);
  RingFile* ring = state != nullptr ? state->RecordingRing() : nullptr;  // nullptr while paused
  TimedCallback timed;
  timed.state = state;
  Sample& sample = timed.sample;
  uint64_t due_ticks = 0;
  SampleKind kind = SampleKind::kReady;
  if (ring != nullptr) {
    if (!state->busy.probe_tried) InstallAsyncioBusyProbe(state, loop);
    sample.name_id = state->NameId(callback);
    const uint32_t handles = CountHandles(state, loop);
    if (Py_TYPE(self) == g_hook.timer_type) {
      kind = SampleKind::kTimer;
      PyObject* when = Slot(self, g_hook.off_when);
      due_ticks = when != nullptr && PyFloat_CheckExact(when) ? MonoNsToTicks(SecondsToNs(PyFloat_AS_DOUBLE(when))) : 0;
    } else {
      EnqueueStamp stamp = TakeEnqueueStamp(self);
      due_ticks = stamp.ticks;
      if (stamp.ticks != 0) kind = stamp.kind;
    }
    sample.handles_kind = Sample::PackHandlesKind(handles, kind);
    sample.start_ticks = NowTicks();
    timed.inflight = BeginInflight(ring->header(), sample.name_id, sample.start_ticks);
  }

  PyObject* result = nullptr;
  uint64_t end = 0;
  {
    CurrentCallbackScope current(ring != nullptr ? &timed : nullptr);
    if (PyContext_Enter(context) == 0) {
      if (PyTuple_CheckExact(args)) {
        result = PyObject_Call(callback, args, nullptr);
      } else {
        PyObject* tuple = PySequence_Tuple(args);  // `*self._args` accepts any iterable
        result = tuple != nullptr ? PyObject_Call(callback, tuple, nullptr) : nullptr;
        Py_XDECREF(tuple);
      }
      if (PyContext_Exit(context) != 0) Py_CLEAR(result);
    } else if (!PyContext_CheckExact(context)) {
      // Not a contextvars.Context (only the failure path pays for this check): stock asyncio calls
      // `self._context.run(...)` on whatever it is, so an object with a run method works, and any
      // other raises the AttributeError that Python would.
      PyErr_Clear();
      result = CallContextRun(context, callback, args);
    }
    if (ring != nullptr) end = NowTicks();
  }

  if (ring != nullptr) {
    sample.duration_ticks = end - sample.start_ticks - timed.nested_ticks;  // less eager steps run inside
    sample.lag_ticks = due_ticks == 0 ? protocol::kLagUnknown
                       : sample.start_ticks > due_ticks ? sample.start_ticks - due_ticks
                                                        : 0;
    state->FinishCallback(timed);
  }
  Py_DECREF(callback);
  Py_DECREF(args);
  Py_DECREF(context);

  if (result != nullptr) {
    Py_DECREF(result);
    Py_RETURN_NONE;
  }
  if (PyErr_ExceptionMatches(PyExc_SystemExit) || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) return nullptr;
  PyObject *type = nullptr, *value = nullptr, *traceback = nullptr;
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  if (traceback != nullptr) PyException_SetTraceback(value, traceback);
  PyObject *saved_type = nullptr, *saved_value = nullptr, *saved_traceback = nullptr;
  PyErr_GetExcInfo(&saved_type, &saved_value, &saved_traceback);
  Py_XINCREF(type);
  Py_XINCREF(value);
  Py_XINCREF(traceback);
  PyErr_SetExcInfo(type, value, traceback);  // as inside `except ... as exc:`
  PyObject* handled = ReportCallbackException(self, value);
  PyErr_SetExcInfo(saved_type, saved_value, saved_traceback);
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(traceback);
  if (handled == nullptr) return nullptr;
  Py_DECREF(handled);
  Py_RETURN_NONE;
}

// self._ready.append(handle): the deque cached per loop, append called through its descriptor.
// Only reads the cache, never fills it: CountHandles fills it while the loop runs and run_forever
// empties it, so a call_soon on a loop that is not running takes no reference that could outlive it.
// A cached deque that only we still hold was replaced by the loop: not used.
PyObject* AppendToReady(PyObject* loop, PyObject* handle) {
  LoopState* state = CachedStateForLoop(loop, LoopKind::kAsyncio);
  PyObject* ready = state != nullptr ? state->ready_queue : nullptr;
  if (ready != nullptr && Py_REFCNT(ready) > 1 && Py_IS_TYPE(ready, g_hook.deque_type)) {
    PyObject* args[2] = {ready, handle};
    return PyObject_Vectorcall(g_hook.deque_append, args, 2, nullptr);
  }
  PyObject* fallback = PyObject_GetAttr(loop, g_hook.s_ready);  // as Python would
  if (fallback == nullptr) return nullptr;
  PyObject* r = PyObject_CallMethodOneArg(fallback, g_hook.s_append, handle);
  Py_DECREF(fallback);
  return r;
}

PyObject* LoopCallSoon(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (nargs != 3 || kwnames != nullptr) {  // not how asyncio calls it: the stock function, as it would run
    PyObject* bound = PyMethod_New(g_hook.stock_call_soon, self);
    if (bound == nullptr) return nullptr;
    PyObject* result = PyObject_Vectorcall(bound, args, nargsf, kwnames);
    Py_DECREF(bound);
    return result;
  }
  PyObject* stack[4] = {args[0], args[1], self, args[2]};
  PyObject* handle = PyObject_Vectorcall(reinterpret_cast<PyObject*>(g_hook.handle_type), stack, 4, nullptr);
  if (handle == nullptr) return nullptr;
  // No `del handle._source_traceback[-1]` here, unlike the stock _call_soon: that removes the stock
  // _call_soon's own frame, and this C function has none. The caller's (call_soon's) frame is the
  // last one, and call_soon removes it itself, so debug-mode tracebacks end where the user scheduled.
  PyObject* appended = AppendToReady(self, handle);
  if (appended == nullptr) {
    Py_DECREF(handle);
    return nullptr;
  }
  Py_DECREF(appended);
  PutEnqueueStamp(handle, NowTicks(), SampleKind::kReady);
  return handle;
}

PyObject* LoopAddCallback(PyObject* self, PyObject* handle) {
  if (!PyObject_TypeCheck(handle, g_hook.handle_type)) {  // not a Handle: stock behaviour
    PyObject* stack[2] = {self, handle};
    return PyObject_Vectorcall(g_hook.stock_add_callback, stack, 2, nullptr);
  }
  PyObject* cancelled = Slot(handle, g_hook.off_cancelled);
  if (cancelled == nullptr) {
    PyErr_SetString(PyExc_AttributeError, "_cancelled");
    return nullptr;
  }
  const int is_cancelled = PyObject_IsTrue(cancelled);
  if (is_cancelled < 0) return nullptr;
  if (is_cancelled == 0) {
    PyObject* appended = AppendToReady(self, handle);
    if (appended == nullptr) return nullptr;
    Py_DECREF(appended);
    PutEnqueueStamp(handle, NowTicks(), SampleKind::kIo);
  }
  Py_RETURN_NONE;
}

// BaseEventLoop.run_forever as stock, then the loop's cached _ready and _scheduled are let go: they
// hold the loop's handles, which hold the loop, so a loop dropped unclosed with callbacks queued is
// a cycle the GC frees, as stock, not one our references keep alive. The next run fetches them again.
PyObject* LoopRunForever(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  PyObject* bound = PyMethod_New(g_hook.stock_run_forever, self);
  if (bound == nullptr) return nullptr;
  PyObject* result = PyObject_Vectorcall(bound, args, nargsf, kwnames);
  Py_DECREF(bound);
  if (LoopState* state = FindStateForLoop(self)) state->ReleaseLoopCaches();
  return result;
}

PyMethodDef g_handle_run_def = {"_run", HandleRun, METH_NOARGS, "loopwatch: Handle._run with timing"};
PyMethodDef g_call_soon_def = {"_call_soon", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(LoopCallSoon)),
                               METH_FASTCALL | METH_KEYWORDS, "loopwatch: BaseEventLoop._call_soon with an enqueue stamp"};
PyMethodDef g_add_callback_def = {"_add_callback", LoopAddCallback, METH_O,
                                  "loopwatch: BaseEventLoop._add_callback with an enqueue stamp"};
PyMethodDef g_run_forever_def = {"run_forever", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(LoopRunForever)),
                                 METH_FASTCALL | METH_KEYWORDS, "Run until stop() is called."};

bool SetMethod(PyTypeObject* type, PyMethodDef* def) {
  PyObject* descr = PyDescr_NewMethod(type, def);
  if (descr == nullptr) return false;
  const int rc = PyObject_SetAttrString(reinterpret_cast<PyObject*>(type), def->ml_name, descr);
  Py_DECREF(descr);
  return rc == 0;
}

}  // namespace

PyObject* InstallAsyncioHook(PyObject* /*module*/, PyObject* const* args, Py_ssize_t nargs) {
  // args: (Handle, TimerHandle, BaseEventLoop, format_helpers._format_callback_source, takes_debug)
  if (nargs != 5 || !PyType_Check(args[0]) || !PyType_Check(args[1]) || !PyType_Check(args[2])) {
    PyErr_SetString(PyExc_TypeError,
                    "install_asyncio(Handle, TimerHandle, BaseEventLoop, format_callback_source, format_takes_debug)");
    return nullptr;
  }
  if (g_hook.installed) Py_RETURN_FALSE;
  if (!InitCallbackKeys()) return nullptr;
  auto* handle_type = reinterpret_cast<PyTypeObject*>(args[0]);
  auto* timer_type = reinterpret_cast<PyTypeObject*>(args[1]);
  auto* loop_type = reinterpret_cast<PyTypeObject*>(args[2]);
  AsyncioHook h;
  h.off_callback = ObjectMemberOffset(handle_type, "_callback");
  h.off_args = ObjectMemberOffset(handle_type, "_args");
  h.off_context = ObjectMemberOffset(handle_type, "_context");
  h.off_loop = ObjectMemberOffset(handle_type, "_loop");
  h.off_cancelled = ObjectMemberOffset(handle_type, "_cancelled");
  h.off_when = ObjectMemberOffset(timer_type, "_when");
  if (h.off_callback < 0 || h.off_args < 0 || h.off_context < 0 || h.off_loop < 0 || h.off_when < 0 ||
      h.off_cancelled < 0) {
    PyErr_SetString(PyExc_RuntimeError, "asyncio.Handle does not have the __slots__ loopwatch was built for");
    return nullptr;
  }
  h.stock_run = PyObject_GetAttrString(args[0], "_run");
  h.stock_call_soon = PyObject_GetAttrString(args[2], "_call_soon");
  h.stock_add_callback = PyObject_GetAttrString(args[2], "_add_callback");
  h.stock_run_forever = PyObject_GetAttrString(args[2], "run_forever");
  h.s_ready = PyUnicode_InternFromString("_ready");
  h.s_scheduled = PyUnicode_InternFromString("_scheduled");
  h.s_append = PyUnicode_InternFromString("append");
  if (PyObject* collections = PyImport_ImportModule("collections")) {
    PyObject* deque = PyObject_GetAttrString(collections, "deque");
    Py_DECREF(collections);
    if (deque != nullptr && PyType_Check(deque)) {
      h.deque_type = reinterpret_cast<PyTypeObject*>(deque);  // kept for the process's life
      h.deque_append = PyObject_GetAttrString(deque, "append");
    } else {
      Py_XDECREF(deque);
    }
  }
  if (h.deque_append == nullptr) return nullptr;
  if (h.stock_run == nullptr || h.stock_call_soon == nullptr || h.stock_add_callback == nullptr ||
      h.stock_run_forever == nullptr || h.s_ready == nullptr ||
      h.s_scheduled == nullptr || h.s_append == nullptr) {
    return nullptr;
  }
  Py_INCREF(args[0]);
  Py_INCREF(args[1]);
  Py_INCREF(args[2]);
  Py_INCREF(args[3]);
  h.handle_type = handle_type;
  h.timer_type = timer_type;
  h.loop_type = args[2];
  h.format_callback_source = args[3];
  h.format_takes_debug = PyObject_IsTrue(args[4]) > 0;
  h.installed = true;
  g_hook = h;
  if (!SetMethod(handle_type, &g_handle_run_def) || !SetMethod(loop_type, &g_call_soon_def) ||
      !SetMethod(loop_type, &g_add_callback_def) || !SetMethod(loop_type, &g_run_forever_def)) {
    UninstallAsyncioHook(nullptr, nullptr);
    return nullptr;
  }
  Py_RETURN_TRUE;
}

PyObject* UninstallAsyncioHook(PyObject* /*module*/, PyObject* /*unused*/) {
  if (!g_hook.installed) Py_RETURN_FALSE;
  // Put the stock functions back on the classes (they are plain Python functions).
  PyObject_SetAttrString(reinterpret_cast<PyObject*>(g_hook.handle_type), "_run", g_hook.stock_run);
  PyObject_SetAttrString(g_hook.loop_type, "_call_soon", g_hook.stock_call_soon);
  PyObject_SetAttrString(g_hook.loop_type, "_add_callback", g_hook.stock_add_callback);
  PyObject_SetAttrString(g_hook.loop_type, "run_forever", g_hook.stock_run_forever);
  g_hook.installed = false;
  if (PyErr_Occurred()) return nullptr;
  Py_RETURN_TRUE;
}

}  // namespace loopwatch::shim
