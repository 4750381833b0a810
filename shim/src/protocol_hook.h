// I/O coverage: timed callbacks on the classes of protocols the loop creates (see protocol_hook.cpp).
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

namespace loopwatch::shim {

// _shim.instrument_protocol(protocol) -> (callbacks timed on this instance, callbacks it has that
// could not be timed, whether its class was patched now). Untimed ones belong to a class that takes
// no attributes (a C type) or are shadowed by instance attributes; their time stays unattributed.
// GIL held.
PyObject* InstrumentProtocol(PyObject* module, PyObject* protocol);
// Module init: the TimedMethod type, ready (exported as _shim.TimedMethod); nullptr on failure.
PyTypeObject* ReadyTimedMethodType();
// For naming: the function a TimedMethod (or a bound method of one) times; nullptr if `object` is
// neither (borrowed).
PyObject* TimedMethodTarget(PyObject* object);

}  // namespace loopwatch::shim
