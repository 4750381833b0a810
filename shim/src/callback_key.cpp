// Callback identity for naming (see callback_key.h). Task steps are the common case on both loops:
// the C Task schedules a TaskStepMethWrapper whose __self__ is the task; the step is named after the
// task's coroutine code, tagged with the low pointer bit (a step resumed through the Task's bound
// task_wakeup, the usual path after an await, gets the same key) so it never collides with a plain function
// that happens to share the code object.
#include "callback_key.h"  // Python.h first

#include <cstring>

#include "protocol_hook.h"
#include "py_compat.h"

namespace loopwatch::shim {
namespace {

PyTypeObject* g_step_wrapper_type = nullptr;  // _asyncio's TaskStepMethWrapper, found on first sight
getter g_step_wrapper_self = nullptr;         // TaskStepMethWrapper.__self__ -> the task
getter g_task_coro = nullptr;                 // _asyncio.Task._coro -> the coroutine
PyTypeObject* g_task_type = nullptr;          // _asyncio.Task: its bound task_wakeup resumes a step

// coroutine.cr_code / generator.gi_code: a member read in place up to 3.11; from 3.12 on the code
// lives in the frame and the attribute is a getset (a C call, no Python code).
struct CodeAttribute {
  Py_ssize_t offset = -1;
  getter get = nullptr;

  void Init(PyTypeObject* type, const char* name) {
    offset = ObjectMemberOffset(type, name);
    if (offset < 0) get = GetsetGetter(type, name);
  }
  // Borrowed, nullptr if unknown. The getter's new reference is dropped at once: the generator's
  // frame holds the code object for as long as the generator lives.
  PyObject* Of(PyObject* object) const {
    if (offset >= 0) return *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(object) + offset);
    if (get == nullptr) return nullptr;
    PyObject* code = get(object, nullptr);
    if (code == nullptr) {
      PyErr_Clear();
      return nullptr;
    }
    Py_DECREF(code);
    return code;
  }
};
CodeAttribute g_coro_code;  // coroutine.cr_code
CodeAttribute g_gen_code;   // generator.gi_code (generator-based coroutines)
bool g_initialized = false;
PyTypeObject* g_partial_type = nullptr;

constexpr uintptr_t kTaskStepTag = 1;

// "TaskStepMethWrapper" up to 3.11, "_asyncio.TaskStepMethWrapper" from 3.12 on.
bool IsStepWrapperTypeName(const char* name) {
  const char* dot = std::strrchr(name, '.');
  return std::strcmp(dot != nullptr ? dot + 1 : name, "TaskStepMethWrapper") == 0;
}

CallbackKey Borrowed(uintptr_t key, PyObject* owner) { return {key, owner}; }

// The key of the steps of a task running `coro` (borrowed): its code object, tagged.
CallbackKey CoroutineStepKey(PyObject* coro) {
  PyObject* code = PyCoro_CheckExact(coro)  ? g_coro_code.Of(coro)
                   : PyGen_CheckExact(coro) ? g_gen_code.Of(coro)
                                            : nullptr;
  // A foreign awaitable (e.g. a Cython coroutine): name the step after the awaitable's type.
  PyObject* owner = code != nullptr ? code : reinterpret_cast<PyObject*>(Py_TYPE(coro));
  return Borrowed(reinterpret_cast<uintptr_t>(owner) | kTaskStepTag, owner);
}

// `task` is borrowed; `fallback` names the step when the task's coroutine cannot be read. The
// coroutine's code object stays alive after we drop our reference to the coroutine: the task holds it.
CallbackKey TaskStepKey(PyObject* task, PyObject* fallback) {
  PyObject* coro = task != nullptr && g_task_coro != nullptr ? g_task_coro(task, nullptr) : nullptr;
  if (coro == nullptr) {
    PyErr_Clear();
    PyObject* type = reinterpret_cast<PyObject*>(Py_TYPE(fallback));
    return Borrowed(reinterpret_cast<uintptr_t>(type) | kTaskStepTag, type);
  }
  CallbackKey k = CoroutineStepKey(coro);
  Py_DECREF(coro);
  return k;
}

CallbackKey StepWrapperKey(PyObject* wrapper) {
  PyObject* task = g_step_wrapper_self != nullptr ? g_step_wrapper_self(wrapper, nullptr) : nullptr;
  if (task == nullptr) PyErr_Clear();
  CallbackKey k = TaskStepKey(task, wrapper);
  Py_XDECREF(task);
  return k;
}

}  // namespace

bool InitCallbackKeys() {
  if (g_initialized) return true;
  g_coro_code.Init(&PyCoro_Type, "cr_code");
  g_gen_code.Init(&PyGen_Type, "gi_code");
  PyObject* asyncio_c = PyImport_ImportModule("_asyncio");
  if (asyncio_c == nullptr) return false;
  PyObject* task_type = PyObject_GetAttrString(asyncio_c, "Task");
  Py_DECREF(asyncio_c);
  if (task_type == nullptr) return false;
  if (PyType_Check(task_type)) {
    g_task_type = reinterpret_cast<PyTypeObject*>(task_type);  // kept for the process's life
    g_task_coro = GetsetGetter(g_task_type, "_coro");
  } else {
    Py_DECREF(task_type);
  }
  PyObject* functools = PyImport_ImportModule("functools");
  if (functools == nullptr) return false;
  PyObject* partial = PyObject_GetAttrString(functools, "partial");
  Py_DECREF(functools);
  if (partial == nullptr) return false;
  g_partial_type = reinterpret_cast<PyTypeObject*>(partial);  // kept for the process's life
  g_initialized = true;
  return true;
}

CallbackKey KeyOf(PyObject* callback) {
  if (PyObject* target = TimedMethodTarget(callback)) callback = target;  // named as what it times
  PyTypeObject* type = Py_TYPE(callback);
  if (type == g_step_wrapper_type) return StepWrapperKey(callback);
  if (PyFunction_Check(callback)) return Borrowed(reinterpret_cast<uintptr_t>(PyFunction_GET_CODE(callback)), PyFunction_GET_CODE(callback));
  if (PyMethod_Check(callback)) {
    PyObject* func = PyMethod_GET_FUNCTION(callback);
    if (PyFunction_Check(func)) return Borrowed(reinterpret_cast<uintptr_t>(PyFunction_GET_CODE(func)), PyFunction_GET_CODE(func));
    return Borrowed(reinterpret_cast<uintptr_t>(func), func);  // e.g. a Cython function: long-lived
  }
  if (PyCFunction_Check(callback)) {
    // A Task resumed by the future it awaited: its bound task_wakeup runs the next step inline.
    PyObject* self = PyCFunction_GET_SELF(callback);
    if (self != nullptr && g_task_type != nullptr && PyObject_TypeCheck(self, g_task_type)) return TaskStepKey(self, callback);
    // The method table entry is static for the module's life: no owner needed.
    return {reinterpret_cast<uintptr_t>(reinterpret_cast<PyCFunctionObject*>(callback)->m_ml), nullptr};
  }
  if (g_step_wrapper_type == nullptr && IsStepWrapperTypeName(type->tp_name)) {
    g_step_wrapper_type = type;
    Py_INCREF(type);
    g_step_wrapper_self = GetsetGetter(type, "__self__");
    return StepWrapperKey(callback);
  }
  // Not callbacks, but named like their task's steps: what eager_tasks.cpp times (a task's first
  // step, run inside create_task) is keyed by the coroutine, or by the task it became.
  if (PyCoro_CheckExact(callback) || PyGen_CheckExact(callback)) return CoroutineStepKey(callback);
  if (g_task_type != nullptr && PyObject_TypeCheck(callback, g_task_type)) return TaskStepKey(callback, callback);
  if (type == g_partial_type) {
    PyObject* func = PyObject_GetAttrString(callback, "func");
    if (func != nullptr) {
      CallbackKey k = KeyOf(func);  // the partial keeps func (and so the key's owner) alive
      Py_DECREF(func);
      return k;
    }
    PyErr_Clear();
  }
  return Borrowed(reinterpret_cast<uintptr_t>(type), reinterpret_cast<PyObject*>(type));
}

}  // namespace loopwatch::shim
