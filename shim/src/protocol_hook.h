// I/O coverage: C wrappers for the callbacks of protocols the loop creates (see protocol_hook.cpp).
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

namespace loopwatch::shim {

// _shim.instrument_protocol(protocol, loop, is_uvloop) -> number of methods wrapped (0: the instance takes no
// attributes, e.g. __slots__: its callbacks stay unattributed).
PyObject* InstrumentProtocol(PyObject* module, PyObject* const* args, Py_ssize_t nargs);
// For naming: the bound method a ProtocolMethod wraps, or nullptr if `object` is not one (borrowed).
PyObject* ProtocolMethodTarget(PyObject* object);

}  // namespace loopwatch::shim
