// See wrapper.h.
#include "wrapper.h"

#include <cstring>

#include "loop_state.h"
#include "py_compat.h"

namespace loopwatch::shim {
namespace {

int WrapperTraverse(PyObject* self, visitproc visit, void* arg) {
  Py_VISIT(reinterpret_cast<Wrapper*>(self)->target);
  return 0;
}

int WrapperClear(PyObject* self) {
  Py_CLEAR(reinterpret_cast<Wrapper*>(self)->target);
  return 0;
}

PyObject* WrapperGetAttr(PyObject* self, PyObject* name) {
  PyObject* attr = PyObject_GenericGetAttr(self, name);
  if (attr != nullptr || !PyErr_ExceptionMatches(PyExc_AttributeError)) return attr;
  PyErr_Clear();
  return PyObject_GetAttr(reinterpret_cast<Wrapper*>(self)->target, name);
}

PyObject* WrapperRepr(PyObject* self) { return PyObject_Repr(reinterpret_cast<Wrapper*>(self)->target); }

PyObject* WrapperWrapped(PyObject* self, void*) { return Py_NewRef(reinterpret_cast<Wrapper*>(self)->target); }

PyGetSetDef g_wrapper_getset[] = {{"__wrapped__", WrapperWrapped, nullptr, nullptr, nullptr}, {}};

PyTypeObject g_wrapper_type = WrapperLikeType("loopwatch._shim.Wrapper", "loopwatch: a timed stand-in for a callable");

}  // namespace

void WrapperDealloc(PyObject* self) {
  auto* w = reinterpret_cast<Wrapper*>(self);
  PyObject_GC_UnTrack(self);
  if (w->state != nullptr) w->state->Release();
  Py_CLEAR(w->target);
  Py_CLEAR(w->weak_self);
  PyObject_GC_Del(self);
}

PyTypeObject WrapperLikeType(const char* name, const char* doc) {
  PyTypeObject t{PyVarObject_HEAD_INIT(nullptr, 0)};
  t.tp_name = name;
  t.tp_basicsize = sizeof(Wrapper);
  SetForwardingSlots(t);
  t.tp_dealloc = WrapperDealloc;
  t.tp_doc = doc;
  return t;
}

void SetForwardingSlots(PyTypeObject& t) {
  t.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL;
  t.tp_vectorcall_offset = offsetof(Wrapper, vectorcall);
  t.tp_call = PyVectorcall_Call;
  t.tp_traverse = WrapperTraverse;
  t.tp_clear = WrapperClear;
  t.tp_getattro = WrapperGetAttr;
  t.tp_repr = WrapperRepr;
  t.tp_getset = g_wrapper_getset;
}

bool InitWrapperType() { return PyType_Ready(&g_wrapper_type) == 0; }

PyObject* NewWrapper(PyObject* target, LoopState* state, vectorcallfunc call) {
  return NewWrapperOf(&g_wrapper_type, target, state, call);
}

PyObject* NewWrapperOf(PyTypeObject* type, PyObject* target, LoopState* state, vectorcallfunc call) {
  auto* w = PyObject_GC_New(Wrapper, type);
  if (w == nullptr) return nullptr;
  w->vectorcall = call;
  w->target = Py_NewRef(target);
  w->state = state;
  w->weak_self = nullptr;
  if (state != nullptr) state->Retain();
  PyObject_GC_Track(reinterpret_cast<PyObject*>(w));
  return reinterpret_cast<PyObject*>(w);
}

PyObject* NewMethodWrapper(PyObject* method, LoopState* state, vectorcallfunc call) {
  if (!PyMethod_Check(method)) {
    PyErr_SetString(PyExc_TypeError, "not a bound method");
    return nullptr;
  }
  PyObject* weak_self = PyWeakref_NewRef(PyMethod_GET_SELF(method), nullptr);
  if (weak_self == nullptr) return nullptr;
  PyObject* wrapper = NewWrapper(PyMethod_GET_FUNCTION(method), state, call);
  if (wrapper == nullptr) {
    Py_DECREF(weak_self);
    return nullptr;
  }
  reinterpret_cast<Wrapper*>(wrapper)->weak_self = weak_self;
  return wrapper;
}

PyObject* CallWrapped(const Wrapper* w, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  if (w->weak_self == nullptr) return PyObject_Vectorcall(w->target, args, nargsf, kwnames);
  PyObject* self = WeakrefObject(w->weak_self);
  if (self == nullptr) {
    PyErr_SetString(PyExc_ReferenceError, "the object of this loopwatch method wrapper no longer exists");
    return nullptr;
  }
  const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  const Py_ssize_t total = nargs + (kwnames != nullptr ? PyTuple_GET_SIZE(kwnames) : 0);
  PyObject* small[8];
  PyObject** stack = total + 1 <= 8 ? small : static_cast<PyObject**>(PyMem_Malloc(sizeof(PyObject*) * (total + 1)));
  PyObject* result = nullptr;
  if (stack == nullptr) {
    PyErr_NoMemory();
  } else {
    stack[0] = self;
    if (total > 0) std::memcpy(stack + 1, args, sizeof(PyObject*) * total);
    result = PyObject_Vectorcall(w->target, stack, static_cast<size_t>(nargs + 1), kwnames);
    if (stack != small) PyMem_Free(stack);
  }
  Py_DECREF(self);
  return result;
}

PyObject* WrapperTarget(PyObject* object, vectorcallfunc call) {
  if (!Py_IS_TYPE(object, &g_wrapper_type)) return nullptr;
  auto* w = reinterpret_cast<Wrapper*>(object);
  return call == nullptr || w->vectorcall == call ? w->target : nullptr;
}

}  // namespace loopwatch::shim
