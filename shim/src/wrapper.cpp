// See wrapper.h.
#include "wrapper.h"

#include "loop_state.h"

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

void WrapperDealloc(PyObject* self) {
  auto* w = reinterpret_cast<Wrapper*>(self);
  PyObject_GC_UnTrack(self);
  if (w->state != nullptr) w->state->Release();
  Py_CLEAR(w->target);
  PyObject_GC_Del(self);
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

PyTypeObject g_wrapper_type = [] {
  PyTypeObject t{PyVarObject_HEAD_INIT(nullptr, 0)};
  t.tp_name = "loopwatch._shim.Wrapper";
  t.tp_basicsize = sizeof(Wrapper);
  SetForwardingSlots(t);
  t.tp_dealloc = WrapperDealloc;
  t.tp_doc = "loopwatch: a timed stand-in for a callable";
  return t;
}();

}  // namespace

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
  auto* w = PyObject_GC_New(Wrapper, &g_wrapper_type);
  if (w == nullptr) return nullptr;
  w->vectorcall = call;
  w->target = Py_NewRef(target);
  w->state = state;
  if (state != nullptr) state->Retain();
  PyObject_GC_Track(reinterpret_cast<PyObject*>(w));
  return reinterpret_cast<PyObject*>(w);
}

PyObject* WrapperTarget(PyObject* object, vectorcallfunc call) {
  if (!Py_IS_TYPE(object, &g_wrapper_type)) return nullptr;
  auto* w = reinterpret_cast<Wrapper*>(object);
  return call == nullptr || w->vectorcall == call ? w->target : nullptr;
}

}  // namespace loopwatch::shim
