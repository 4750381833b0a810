// Entry points of the asyncio hook (asyncio_hook.cpp), exposed as _shim.install_asyncio/uninstall_asyncio.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

namespace loopwatch::shim {

PyObject* InstallAsyncioHook(PyObject* module, PyObject* const* args, Py_ssize_t nargs);
PyObject* UninstallAsyncioHook(PyObject* module, PyObject* unused);

}  // namespace loopwatch::shim
