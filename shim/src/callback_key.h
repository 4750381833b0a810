// What identifies a callback for naming. The hot path hashes one pointer: the code object of a
// function, method or Task's coroutine, the C method table entry of a builtin, or the type of any
// other callable. A coroutine or a Task (what an eager task's first step is named by) has the key of
// the task's steps. Computing the key never calls Python code and never raises.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstdint>

namespace loopwatch::shim {

struct CallbackKey {
  uintptr_t key = 0;
  PyObject* owner = nullptr;  // borrowed, alive while the callback is: the object pinning `key`
};

// Resolves what it reads (Task._coro, coroutine cr_code, ...) from the running interpreter. Imports
// _asyncio (and so asyncio): call it when a hook is installed, never at module import. Idempotent.
// Returns false, with a Python error set, if that fails.
bool InitCallbackKeys();

// `callback` is borrowed. To cache the key beyond the callback, take a reference to the owner.
CallbackKey KeyOf(PyObject* callback);

}  // namespace loopwatch::shim
