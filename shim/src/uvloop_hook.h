// Entry points of the uvloop hook (uvloop_hook.cpp), exposed as _shim.install_uvloop/uninstall_uvloop.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

namespace loopwatch::shim {

bool InitUvloopHook();  // readies the Trampoline type; false with a Python error set on failure
PyObject* InstallUvloopHook(PyObject* module, PyObject* loop_type);
PyObject* UninstallUvloopHook(PyObject* module, PyObject* unused);
// Whether `loop` is a uvloop loop (an instance of the uvloop.Loop the hook was installed on).
bool IsUvloopLoop(PyObject* loop);

}  // namespace loopwatch::shim
