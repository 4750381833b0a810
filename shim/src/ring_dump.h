// _shim.read_ring(path): decodes a ring file into Python objects without consuming it. For
// `python -m loopwatch.dump`, loopwatch.status() and the tests; it validates with the same
// CheckHeader and NameTableReader as the agent, so it can be pointed at any file safely.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

namespace loopwatch::shim {

PyObject* ReadRingFile(PyObject* module, PyObject* path);

}  // namespace loopwatch::shim
