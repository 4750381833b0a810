// The loopwatch._shim extension module: configuration, the install/uninstall entry points of the
// asyncio and uvloop hooks, status, and the debug ring reader. All per-callback work lives in the
// hook files; this file only wires them to Python. The pure-Python package decides when to call what.
#include <cstdlib>
#include <string>

#include "asyncio_hook.h"
#include "attribution.h"
#include "busy_time.h"
#include "callback_key.h"
#include "callback_limit.h"
#include "eager_tasks.h"
#include "loop_state.h"
#include "protocol_hook.h"
#include "ring_dump.h"
#include "tick_clock.h"
#include "uvloop_hook.h"
#include "wrapper.h"

namespace loopwatch::shim {
namespace {

PyObject* Configure(PyObject* /*module*/, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"dir", "service", "namer", "ring_capacity", nullptr};
  const char* dir = nullptr;
  PyObject* service = nullptr;  // a str, or a callable returning one when the first ring is made
  PyObject* namer = nullptr;
  unsigned int ring_capacity = protocol::kDefaultGeometry.ring_capacity;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sOO|I", const_cast<char**>(keywords), &dir, &service, &namer,
                                   &ring_capacity)) {
    return nullptr;
  }
  if (ring_capacity < protocol::kMinRingCapacity || ring_capacity > protocol::kMaxRingCapacity ||
      (ring_capacity & (ring_capacity - 1)) != 0) {
    PyErr_Format(PyExc_ValueError, "ring_capacity must be a power of two in [%u, %u]", protocol::kMinRingCapacity,
                 protocol::kMaxRingCapacity);
    return nullptr;
  }
  if (!PyUnicode_Check(service) && !PyCallable_Check(service)) {
    PyErr_SetString(PyExc_TypeError, "service must be a str or a callable returning one");
    return nullptr;
  }
  if (!PyCallable_Check(namer)) {
    PyErr_SetString(PyExc_TypeError, "namer must be callable");
    return nullptr;
  }
  ShimConfig& config = Config();
  config.dir = dir;
  Py_XSETREF(config.service, Py_NewRef(service));
  config.geometry.ring_capacity = ring_capacity;
  Py_XSETREF(config.namer, Py_NewRef(namer));
  Py_RETURN_NONE;
}

PyObject* ClockInfo(PyObject* /*module*/, PyObject* /*unused*/) {
  const TickCalibration& c = TickClock::Calibration();
  return Py_BuildValue("{s:s,s:d}", "kind", c.kind == protocol::ClockKind::kTsc ? "tsc" : "monotonic_ns", "ns_per_tick",
                       c.ns_per_tick);
}

PyObject* SetUvloopLibraryPath(PyObject* /*module*/, PyObject* path) {
  if (!PyUnicode_Check(path)) {
    PyErr_SetString(PyExc_TypeError, "set_uvloop_library(path: str)");
    return nullptr;
  }
  const char* utf8 = PyUnicode_AsUTF8(path);
  if (utf8 == nullptr) return nullptr;
  SetUvloopLibrary(utf8);
  Py_RETURN_NONE;
}

// A list of str as UTF-8 strings; false (TypeError set) for anything else.
bool StringList(PyObject* list, std::vector<std::string>* out) {
  if (!PyList_Check(list)) {
    PyErr_SetString(PyExc_TypeError, "set_attribution_rules takes four lists of str");
    return false;
  }
  out->clear();
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); ++i) {
    PyObject* item = PyList_GET_ITEM(list, i);
    Py_ssize_t size = 0;
    const char* utf8 = PyUnicode_Check(item) ? PyUnicode_AsUTF8AndSize(item, &size) : nullptr;
    if (utf8 == nullptr) {
      if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "set_attribution_rules takes four lists of str");
      return false;
    }
    out->emplace_back(utf8, static_cast<std::size_t>(size));
  }
  return true;
}

PyObject* SetAttributionRules(PyObject* /*module*/, PyObject* args) {
  PyObject* lists[4];
  if (!PyArg_ParseTuple(args, "OOOO", &lists[0], &lists[1], &lists[2], &lists[3])) return nullptr;
  AttributionRules rules;
  if (!StringList(lists[0], &rules.skip_prefixes) || !StringList(lists[1], &rules.library_prefixes) ||
      !StringList(lists[2], &rules.user_prefixes) || !StringList(lists[3], &rules.roots)) {
    return nullptr;
  }
  Rules() = std::move(rules);  // GIL held: the watchdogs read the rules only under the GIL
  Py_RETURN_NONE;
}

PyObject* IsUserFilePath(PyObject* /*module*/, PyObject* file) {
  const char* utf8 = PyUnicode_Check(file) ? PyUnicode_AsUTF8(file) : nullptr;
  if (utf8 == nullptr) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "is_user_file(path: str)");
    return nullptr;
  }
  return PyBool_FromLong(IsUserFile(utf8, Rules()) ? 1 : 0);
}

PyObject* Loops(PyObject* /*module*/, PyObject* /*unused*/) { return RegistryStatusList(); }

PyObject* LoopStatus(PyObject* /*module*/, PyObject* loop) {
  LoopState* state = FindStateForLoop(loop);
  if (state == nullptr) Py_RETURN_NONE;
  return state->StatusDict();
}

PyObject* CloseAll(PyObject* /*module*/, PyObject* /*unused*/) {
  CloseAllRings();
  Py_RETURN_NONE;
}

PyObject* Shutdown(PyObject* /*module*/, PyObject* /*unused*/) {
  ShutdownRings();
  Py_RETURN_NONE;
}

PyObject* BeforeFork(PyObject* /*module*/, PyObject* /*unused*/) {
  SuspendWatchdogsForFork();
  Py_RETURN_NONE;
}

PyObject* AfterForkInParent(PyObject* /*module*/, PyObject* /*unused*/) {
  ResumeWatchdogsAfterFork();
  Py_RETURN_NONE;
}

PyObject* SetPaused(PyObject* /*module*/, PyObject* paused) {
  const int truth = PyObject_IsTrue(paused);
  if (truth < 0) return nullptr;
  SetProcessPaused(truth != 0);
  Py_RETURN_NONE;
}

PyObject* IsPaused(PyObject* /*module*/, PyObject* /*unused*/) { return PyBool_FromLong(ProcessPaused() ? 1 : 0); }

PyObject* FirstError(PyObject* /*module*/, PyObject* /*unused*/) {
  std::string error;
  if (!AnyRecordingFailed(&error)) Py_RETURN_NONE;
  return PyUnicode_DecodeUTF8(error.data(), static_cast<Py_ssize_t>(error.size()), "replace");
}

#define LW_FASTCALL(fn) reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fn))
PyMethodDef g_module_methods[] = {
    {"configure", LW_FASTCALL(Configure), METH_VARARGS | METH_KEYWORDS,
     "configure(dir, service, namer, ring_capacity=131072): where and how new rings are created; service is a str or a callable"},
    {"install_asyncio", LW_FASTCALL(InstallAsyncioHook), METH_FASTCALL,
     "install_asyncio(Handle, TimerHandle, BaseEventLoop, format_callback_source, format_takes_debug) -> bool (False: already)"},
    {"uninstall_asyncio", UninstallAsyncioHook, METH_NOARGS, "put asyncio's stock methods back"},
    {"install_uvloop", InstallUvloopHook, METH_O, "install_uvloop(uvloop.Loop) -> bool (False: already)"},
    {"uninstall_uvloop", UninstallUvloopHook, METH_NOARGS, "put uvloop's own methods back"},
    {"clock", ClockInfo, METH_NOARGS, "the per-callback clock: {kind, ns_per_tick}"},
    {"set_uvloop_library", SetUvloopLibraryPath, METH_O,
     "set_uvloop_library(path): the uvloop.loop extension file, where busy time finds libuv"},
    {"time_eager_factory", TimeEagerFactory, METH_O,
     "time_eager_factory(factory) -> a task factory that calls it and times the eager first step it runs"},
    {"set_attribution_rules", SetAttributionRules, METH_VARARGS,
     "set_attribution_rules(skip, library, user, roots): path prefixes that decide which frames are the user's"},
    {"is_user_file", IsUserFilePath, METH_O, "is_user_file(path) -> whether a frame in that file counts as the user's"},
    {"loops", Loops, METH_NOARGS, "one dict per loop seen: id, kind, state, file, error, samples, drops"},
    {"instrument_protocol", InstrumentProtocol, METH_O,
     "instrument_protocol(protocol) -> (callbacks timed on it, callbacks not timed, its class patched now)"},
    {"loop_status", LoopStatus, METH_O, "loop_status(loop) -> the dict loops() has for it, or None"},
    {"close_all", CloseAll, METH_NOARGS, "close every ring (at exit); loops keep running unrecorded"},
    {"shutdown", Shutdown, METH_NOARGS, "at exit: no new watchdog threads, then close_all() (joins every watchdog)"},
    {"before_fork", BeforeFork, METH_NOARGS, "os.register_at_fork(before=): stop every watchdog thread"},
    {"after_fork_in_parent", AfterForkInParent, METH_NOARGS,
     "os.register_at_fork(after_in_parent=): start the watchdog threads stopped by before_fork again"},
    {"set_paused", SetPaused, METH_O, "set_paused(bool): pause or resume recording on every ring of the process"},
    {"paused", IsPaused, METH_NOARGS, "paused() -> bool: whether the application paused recording"},
    {"first_error", FirstError, METH_NOARGS, "why recording was disabled, or None"},
    {"read_ring", ReadRingFile, METH_O, "read_ring(path) -> {header, names, samples}; does not consume"},
    {"set_callback_limit", SetCallbackLimit, METH_O,
     "set_callback_limit(seconds or None): remember callbacks that run longer (None: off, the default)"},
    {"take_over_limit", TakeOverLimit, METH_NOARGS,
     "take_over_limit() -> ([{name, seconds, loop, loop_id, kind}], missed): the callbacks over the limit; clears"},
    {nullptr, nullptr, 0, nullptr},
};
#undef LW_FASTCALL

PyModuleDef g_module = {
    PyModuleDef_HEAD_INIT, "loopwatch._shim", "loopwatch's in-process hooks (C++)", -1, g_module_methods,
};

}  // namespace
}  // namespace loopwatch::shim

PyMODINIT_FUNC PyInit__shim() {
  using namespace loopwatch::shim;
  if (!InitUvloopHook() || !InitWrapperType()) return nullptr;
  const char* clock = std::getenv("LOOPWATCH_CLOCK");  // "monotonic" forces the fallback clock
  TickClock::Init(clock != nullptr && std::string(clock) == "monotonic", CpuInfoFlags());
  PyObject* module = PyModule_Create(&g_module);
  if (module == nullptr) return nullptr;
  if (PyModule_AddIntConstant(module, "LAYOUT_VERSION_MAJOR", loopwatch::protocol::kVersionMajor) != 0 ||
      PyModule_AddIntConstant(module, "LAYOUT_VERSION_MINOR", loopwatch::protocol::kVersionMinor) != 0 ||
      PyModule_AddIntConstant(module, "DEFAULT_RING_CAPACITY", loopwatch::protocol::kDefaultGeometry.ring_capacity) != 0) {
    Py_DECREF(module);
    return nullptr;
  }
  PyTypeObject* timed_method = ReadyTimedMethodType();
  PyTypeObject* eager_factory = ReadyEagerFactoryType();
  if (timed_method == nullptr || eager_factory == nullptr ||
      PyModule_AddObjectRef(module, "TimedMethod", reinterpret_cast<PyObject*>(timed_method)) != 0 ||
      PyModule_AddObjectRef(module, "EagerFactory", reinterpret_cast<PyObject*>(eager_factory)) != 0) {
    Py_DECREF(module);
    return nullptr;
  }
  InstallForkHandler();
  return module;
}
