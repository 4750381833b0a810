// Eager tasks (CPython 3.12+): the first step, run inside create_task, timed as the task's step
// (see eager_tasks.cpp). GIL held.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

namespace loopwatch::shim {

// Module init: the EagerFactory type, ready (exported as _shim.EagerFactory); nullptr on failure.
PyTypeObject* ReadyEagerFactoryType();
// _shim.time_eager_factory(factory) -> an EagerFactory calling `factory` (itself if it is one).
PyObject* TimeEagerFactory(PyObject* module, PyObject* factory);

}  // namespace loopwatch::shim
