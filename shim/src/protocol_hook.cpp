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
#include "loop_state.h"
#include "wrapper.h"

namespace loopwatch::shim {

thread_local protocol::Sample* t_current_sample __attribute__((tls_model("initial-exec"))) = nullptr;

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
  if (Sample* enclosing = t_current_sample) {
    // Inside a timed handle on this thread: that sample is this callback's time.
    enclosing->name_id = state->NameId(p->target);
    enclosing->handles_kind = Sample::PackHandlesKind(enclosing->handles(), SampleKind::kIo);
    return PyObject_Vectorcall(p->target, args, nargsf, kwnames);
  }
  Sample sample{};
  sample.name_id = state->NameId(p->target);
  sample.handles_kind = Sample::PackHandlesKind(static_cast<uint32_t>(state->pending < 0 ? 0 : state->pending), SampleKind::kIo);
  sample.lag_ticks = protocol::kLagUnknown;  // when the bytes arrived is the kernel's secret
  PyObject* method = Py_NewRef(p->target);   // the callback may drop the protocol's last reference
  PyObject* result;
  {
    CurrentSampleScope scope(&sample);
    sample.start_ticks = NowTicks();
    result = PyObject_Vectorcall(method, args, nargsf, kwnames);
    sample.duration_ticks = NowTicks() - sample.start_ticks;
  }
  Py_DECREF(method);
  if (state->Ring() != nullptr) state->Push(sample);
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
