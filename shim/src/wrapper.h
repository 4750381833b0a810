// A C callable standing in for a Python callable: same repr and attributes (read through to the
// target), plus a behaviour of our own given as the vectorcall function. Used where loopwatch must
// put a timed callable where Python code expects the original: protocol callbacks
// (protocol_hook.cpp) and the asyncio selector's select (busy_time.cpp).
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

namespace loopwatch::shim {

class LoopState;

struct Wrapper {
  PyObject_HEAD
  vectorcallfunc vectorcall;
  PyObject* target;  // the callable stood in for
  LoopState* state;  // retained; nullptr if the loop cannot be tracked
};

// Makes `type` a forwarding callable like Wrapper: vectorcall at Wrapper's offset, GC over the
// target, attributes/repr/__wrapped__ from the target. For types whose objects start like a Wrapper
// (the uvloop Trampoline); they add their own fields after `state` and their own tp_dealloc.
void SetForwardingSlots(PyTypeObject& type);

bool InitWrapperType();
// New reference. Takes a new reference to `target` and retains `state`.
PyObject* NewWrapper(PyObject* target, LoopState* state, vectorcallfunc call);
// The target of a Wrapper made with `call` (nullptr: not one; borrowed).
PyObject* WrapperTarget(PyObject* object, vectorcallfunc call = nullptr);

}  // namespace loopwatch::shim
