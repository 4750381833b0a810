// Protocol callbacks are I/O: uvloop calls data_received & co. straight from libuv, never through a
// handle, so no loop hook sees them. The Python side wraps each protocol factory given to
// create_server/create_connection/...; every protocol instance it makes gets a ProtocolMethod on each
// of its callbacks (an instance attribute, so transports that cache `protocol.data_received` cache
// ours). Called inside a timed handle (asyncio's _read_ready), it renames that sample; called from
// libuv directly, it records an I/O sample of its own. Per-connection work is Python; per-callback
// work is only this C code.
#include "protocol_hook.h"

#include "clock.h"
#include "current_sample.h"
#include "inflight.h"
#include "loop_state.h"
#include "wrapper.h"

namespace loopwatch::shim {

thread_local TimedCallback* t_current_callback __attribute__((tls_model("initial-exec"))) = nullptr;

namespace {

using protocol::LoopKind;
using protocol::Sample;
using protocol::SampleKind;

constexpr const char* kProtocolCallbacks[] = {
    "connection_made", "data_received", "eof_received", "connection_lost", "buffer_updated", "datagram_received",
    "error_received",  "pause_writing", "resume_writing",
};

PyObject* ProtocolMethodCall(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  auto* p = reinterpret_cast<Wrapper*>(self);
  LoopState* state = p->state;
  RingFile* ring = state != nullptr ? state->Ring() : nullptr;
  if (ring == nullptr) return PyObject_Vectorcall(p->target, args, nargsf, kwnames);
  if (TimedCallback* enclosing = t_current_callback) {
    // Inside a timed handle on this thread (which already decided about pausing): that sample is
    // this callback's time, and the in-flight slot it holds now names this callback.
    Sample& outer = enclosing->sample;
    outer.name_id = state->NameId(p->target);
    outer.handles_kind = Sample::PackHandlesKind(outer.handles(), SampleKind::kIo);
    // Only the slot of this loop's live ring (the enclosing handle may belong to another loop).
    if (enclosing->inflight == ring->header()) RenameInflight(enclosing->inflight, outer.name_id);
    return PyObject_Vectorcall(p->target, args, nargsf, kwnames);
  }
  if (Paused(ring->header())) return PyObject_Vectorcall(p->target, args, nargsf, kwnames);
  TimedCallback timed;
  Sample& sample = timed.sample;
  sample.name_id = state->NameId(p->target);
  sample.handles_kind = Sample::PackHandlesKind(static_cast<uint32_t>(state->pending < 0 ? 0 : state->pending), SampleKind::kIo);
  sample.lag_ticks = protocol::kLagUnknown;  // when the bytes arrived is the kernel's secret
  PyObject* method = Py_NewRef(p->target);   // the callback may drop the protocol's last reference
  PyObject* result;
  {
    CurrentCallbackScope scope(&timed);
    sample.start_ticks = NowTicks();
    timed.inflight = BeginInflight(ring->header(), sample.name_id, sample.start_ticks);
    result = PyObject_Vectorcall(method, args, nargsf, kwnames);
    sample.duration_ticks = NowTicks() - sample.start_ticks;
  }
  Py_DECREF(method);
  state->FinishCallback(timed);
  return result;
}

}  // namespace

PyObject* ProtocolMethodTarget(PyObject* object) { return WrapperTarget(object, ProtocolMethodCall); }

PyObject* InstrumentProtocol(PyObject* /*module*/, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 3) {
    PyErr_SetString(PyExc_TypeError, "instrument_protocol(protocol, loop, is_uvloop)");
    return nullptr;
  }
  PyObject* protocol = args[0];
  const LoopKind kind = PyObject_IsTrue(args[2]) > 0 ? LoopKind::kUvloop : LoopKind::kAsyncio;
  LoopState* state = StateForLoop(args[1], kind);
  long wrapped = 0;
  for (const char* name : kProtocolCallbacks) {
    PyObject* method = PyObject_GetAttrString(protocol, name);
    if (method == nullptr) {
      PyErr_Clear();
      continue;
    }
    if (!PyCallable_Check(method) || WrapperTarget(method) != nullptr) {
      Py_DECREF(method);
      continue;
    }
    PyObject* p = NewWrapper(method, state, ProtocolMethodCall);
    Py_DECREF(method);
    if (p == nullptr) return nullptr;
    const int rc = PyObject_SetAttrString(protocol, name, p);
    Py_DECREF(p);
    if (rc != 0) {  // no instance attributes (__slots__, a C type): leave the protocol as it is
      PyErr_Clear();
      break;
    }
    ++wrapped;
  }
  return PyLong_FromLong(wrapped);
}

}  // namespace loopwatch::shim
