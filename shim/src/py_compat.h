// The few places where the C API the shim uses differs between the CPython versions it supports
// (3.10–3.13), kept in one header so the hooks read the same on every version. Each helper says which
// versions differ and why. Called with the GIL held, from any thread that holds it.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <frameobject.h>
#include <structmember.h>

namespace loopwatch::shim {

// The descriptor `name` of `type` (its own or inherited), as `type.name` returns it: for member and
// getset descriptors that is the descriptor itself. Borrowed; nullptr (no error set) if absent.
// Not type->tp_dict: from 3.12 on, static builtin types (the coroutine type, ...) keep their dict per
// interpreter and tp_dict is NULL. The type's dict keeps the descriptor alive for the type's life.
inline PyObject* TypeDescriptor(PyTypeObject* type, const char* name) {
  PyObject* descr = PyObject_GetAttrString(reinterpret_cast<PyObject*>(type), name);
  if (descr == nullptr) {
    PyErr_Clear();
    return nullptr;
  }
  Py_DECREF(descr);  // still owned by the type's dict
  return descr;
}

// Offset of an object member (a __slots__ entry or a C T_OBJECT member) read in place; -1 if `type`
// has no such member descriptor.
inline Py_ssize_t ObjectMemberOffset(PyTypeObject* type, const char* name) {
  PyObject* descr = TypeDescriptor(type, name);
  if (descr == nullptr || !PyObject_TypeCheck(descr, &PyMemberDescr_Type)) return -1;
  PyMemberDef* member = reinterpret_cast<PyMemberDescrObject*>(descr)->d_member;
  return member->type == T_OBJECT || member->type == T_OBJECT_EX ? member->offset : -1;
}

// The C getter of a getset descriptor of `type`; nullptr if it has none by that name.
inline getter GetsetGetter(PyTypeObject* type, const char* name) {
  PyObject* descr = TypeDescriptor(type, name);
  if (descr == nullptr || !PyObject_TypeCheck(descr, &PyGetSetDescr_Type)) return nullptr;
  return reinterpret_cast<PyGetSetDescrObject*>(descr)->d_getset->get;
}

// The attribute `name` (an interned str) as stored in the dict of `type` or of the first base in its
// MRO that has it, unbound (a function, a staticmethod object, ...). Borrowed; nullptr if none.
// _PyType_Lookup: the type attribute cache's lookup, in the C API of every supported version.
inline PyObject* TypeLookupRaw(PyTypeObject* type, PyObject* name) { return _PyType_Lookup(type, name); }

// Public from 3.13 on; the underscore name is gone there.
inline bool InterpreterFinalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

// A code object's qualified name: co_qualname exists from 3.11 on; 3.10 has only co_name.
inline PyObject* CodeQualname(PyCodeObject* code) {  // borrowed
#if PY_VERSION_HEX >= 0x030B0000
  return code->co_qualname;
#else
  return code->co_name;
#endif
}

// A weak reference's object as a new reference; nullptr if it is dead. PyWeakref_GetRef is 3.13+;
// PyWeakref_GetObject (borrowed) is deprecated there.
inline PyObject* WeakrefObject(PyObject* ref) {
#if PY_VERSION_HEX >= 0x030D0000
  PyObject* object = nullptr;
  if (PyWeakref_GetRef(ref, &object) < 0) PyErr_Clear();
  return object;
#else
  PyObject* object = PyWeakref_GetObject(ref);
  return object != nullptr && object != Py_None ? Py_NewRef(object) : nullptr;
#endif
}

// A frame's globals (new reference). PyFrame_GetGlobals is 3.11+; 3.10's frame struct is public.
inline PyObject* FrameGlobals(PyFrameObject* frame) {
#if PY_VERSION_HEX >= 0x030B0000
  return PyFrame_GetGlobals(frame);
#else
  return Py_XNewRef(frame->f_globals);
#endif
}

// The names of a code object's local variables, arguments first (new reference, a tuple).
// PyCode_GetVarnames is 3.11+; 3.10 keeps the tuple in co_varnames.
inline PyObject* CodeVarnames(PyCodeObject* code) {
#if PY_VERSION_HEX >= 0x030B0000
  return PyCode_GetVarnames(code);
#else
  return Py_XNewRef(code->co_varnames);
#endif
}

// The value of the local variable `name` (an str) of a suspended frame (the caller holds the GIL, so
// the frame's thread is between bytecodes or in a C call). New reference; nullptr with no error set
// when the variable is unbound or the frame cannot be read. 3.12+ has PyFrame_GetVar; before that the
// frame's locals dict (PyFrame_GetLocals, 3.11; FastToLocals + f_locals on 3.10). Runs no Python code.
inline PyObject* FrameVariable(PyFrameObject* frame, PyObject* name) {
#if PY_VERSION_HEX >= 0x030C0000
  PyObject* value = PyFrame_GetVar(frame, name);
#elif PY_VERSION_HEX >= 0x030B0000
  PyObject* locals = PyFrame_GetLocals(frame);
  PyObject* value = locals != nullptr && PyDict_Check(locals) ? Py_XNewRef(PyDict_GetItemWithError(locals, name)) : nullptr;
  Py_XDECREF(locals);
#else
  PyObject* value = nullptr;
  if (PyFrame_FastToLocalsWithError(frame) == 0 && frame->f_locals != nullptr && PyDict_Check(frame->f_locals)) {
    value = Py_XNewRef(PyDict_GetItemWithError(frame->f_locals, name));
  }
#endif
  if (value == nullptr) PyErr_Clear();
  return value;
}

}  // namespace loopwatch::shim
