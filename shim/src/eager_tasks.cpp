// Eager tasks (CPython 3.12+): with asyncio.eager_task_factory a task's first step runs inside
// create_task, in whatever callback created it, outside every handle. The Python side replaces
// asyncio.eager_task_factory (and what create_eager_task_factory returns) by an EagerFactory: a C
// callable that calls the stock factory unchanged and times that call as the task's step: a sample
// named `Task.__step of <coroutine>` (kind ready, lag unknown: it never waited in a queue). Its time
// is taken out of the enclosing callback's sample (TimedCallback::nested_ticks), so every moment is
// counted once; while it runs, the in-flight slot names the task (the loop is stuck in it), and the
// enclosing callback's name comes back after it. Loop thread, GIL held.
#include "eager_tasks.h"

#include "clock.h"
#include "current_sample.h"
#include "inflight.h"
#include "loop_state.h"
#include "uvloop_hook.h"
#include "wrapper.h"

namespace loopwatch::shim {
namespace {

using protocol::LoopKind;
using protocol::Sample;
using protocol::SampleKind;

// factory(loop, coro, *, name=None, context=None), as asyncio calls a task factory.
PyObject* EagerFactoryCall(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  PyObject* stock = reinterpret_cast<Wrapper*>(self)->target;
  const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  LoopState* state = nullptr;
  if (nargs >= 2) state = CachedStateForLoop(args[0], IsUvloopLoop(args[0]) ? LoopKind::kUvloop : LoopKind::kAsyncio);
  RingFile* ring = state != nullptr ? state->RecordingRing() : nullptr;  // nullptr while paused
  if (ring == nullptr) return PyObject_Vectorcall(stock, args, nargsf, kwnames);
  TimedCallback* enclosing = t_current_callback;
  TimedCallback timed;
  timed.state = state;
  Sample& sample = timed.sample;
  sample.lag_ticks = protocol::kLagUnknown;
  sample.handles_kind = Sample::PackHandlesKind(0, SampleKind::kReady);
  // A coroutine has the key and name of its task's steps (callback_key.h); anything else (the stock
  // factory will refuse it, or a custom task takes it) is named after the task it became.
  PyObject* coro = args[1];
  const bool named_now = PyCoro_CheckExact(coro) || PyGen_CheckExact(coro);
  sample.name_id = named_now ? state->NameId(coro) : protocol::kNameIdOther;
  PyObject* task;
  {
    CurrentCallbackScope scope(&timed);
    sample.start_ticks = NowTicks();
    if (enclosing == nullptr) {
      timed.inflight = BeginInflight(ring->header(), sample.name_id, sample.start_ticks);
    } else if (enclosing->inflight != nullptr) {
      // The slot stays with the outermost callback (its start is when the loop got stuck), named
      // after this step while it runs.
      RenameInflight(enclosing->inflight, sample.name_id);
    }
    task = PyObject_Vectorcall(stock, args, nargsf, kwnames);
    const uint64_t wall = NowTicks() - sample.start_ticks;
    sample.duration_ticks = wall - timed.nested_ticks;
    if (enclosing != nullptr) {
      if (enclosing->inflight != nullptr) RenameInflight(enclosing->inflight, enclosing->sample.name_id);
      if (task != nullptr) enclosing->nested_ticks += wall;  // counted here, not again there
    }
  }
  if (task == nullptr) {  // the factory raised: no sample; the time stays with the caller
    if (timed.inflight != nullptr) EndInflight(timed.inflight);
    return nullptr;
  }
  if (!named_now) sample.name_id = state->NameId(task);
  state->FinishCallback(timed);
  return task;
}

PyTypeObject g_eager_factory_type =
    WrapperLikeType("loopwatch._shim.EagerFactory", "loopwatch: an eager task factory whose first steps are timed");

}  // namespace

PyTypeObject* ReadyEagerFactoryType() {
  return PyType_Ready(&g_eager_factory_type) == 0 ? &g_eager_factory_type : nullptr;
}

PyObject* TimeEagerFactory(PyObject* /*module*/, PyObject* factory) {
  if (!PyCallable_Check(factory)) {
    PyErr_SetString(PyExc_TypeError, "time_eager_factory(factory): factory must be callable");
    return nullptr;
  }
  if (Py_IS_TYPE(factory, &g_eager_factory_type)) return Py_NewRef(factory);
  return NewWrapperOf(&g_eager_factory_type, factory, nullptr, EagerFactoryCall);
}

}  // namespace loopwatch::shim
