// A C callable standing in for a Python callable: same repr and attributes (read through to the
// target), plus a behaviour of our own given as the vectorcall function. Used where loopwatch must
// put a timed callable where Python code expects the original: the asyncio selector's select
// (busy_time.cpp), and, sharing the layout and the forwarding slots, protocol callbacks
// (protocol_hook.cpp's TimedMethod) and uvloop's Trampoline. GIL held for everything here.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

namespace loopwatch::shim {

class LoopState;

struct Wrapper {
  PyObject_HEAD
  vectorcallfunc vectorcall;
  PyObject* target;     // the callable stood in for (with weak_self: the function of that bound method)
  LoopState* state;     // retained; nullptr if the loop cannot be tracked
  PyObject* weak_self;  // NewMethodWrapper: a weak reference to the method's instance; else nullptr
};

// Makes `type` a forwarding callable like Wrapper: vectorcall at Wrapper's offset, GC over the
// target, attributes/repr/__wrapped__ from the target. For types whose objects start like a Wrapper
// (the uvloop Trampoline); they add their own fields after `state` and their own tp_dealloc.
void SetForwardingSlots(PyTypeObject& type);

// A type laid out as a Wrapper: the forwarding slots and WrapperDealloc (TimedMethod, EagerFactory).
PyTypeObject WrapperLikeType(const char* name, const char* doc);
void WrapperDealloc(PyObject* self);  // for types laid out as a Wrapper

bool InitWrapperType();
// New reference. Takes a new reference to `target` and retains `state` (which may be nullptr).
PyObject* NewWrapper(PyObject* target, LoopState* state, vectorcallfunc call);
// The same for a type made by WrapperLikeType (ready).
PyObject* NewWrapperOf(PyTypeObject* type, PyObject* target, LoopState* state, vectorcallfunc call);
// For a bound method stored on its own instance (obj.attr = wrapper): holds the method's function and
// only a weak reference to the instance, so the wrapper makes no reference cycle with it. nullptr
// (error set) if `method` is not a bound method or its instance takes no weak references.
PyObject* NewMethodWrapper(PyObject* method, LoopState* state, vectorcallfunc call);
// Calls what the wrapper stands in for with these arguments (the instance first, for a method
// wrapper). A method wrapper whose instance is gone raises ReferenceError.
PyObject* CallWrapped(const Wrapper* w, PyObject* const* args, size_t nargsf, PyObject* kwnames);
// The target of a Wrapper made with `call` (nullptr: not one; borrowed).
PyObject* WrapperTarget(PyObject* object, vectorcallfunc call = nullptr);

}  // namespace loopwatch::shim
