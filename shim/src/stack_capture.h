// The Python stack of another thread, taken by the watchdog thread while it holds the GIL (so the
// other thread is between bytecodes or inside a C call that released the GIL, and its frames stand
// still). Innermost frame first. Runs no Python code: the frames are read through the C API, the
// cyclic GC is held off meanwhile (an allocation here could otherwise start a collection, whose
// weakref callbacks could close rings from the watchdog thread).
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "report_json.h"

namespace loopwatch::shim {

// GIL held. `thread_ident` is the thread's PyThread_get_thread_ident() (the key of
// sys._current_frames()). Returns false and sets `error` when the thread has no Python frames (it
// ended, or runs no Python code). Never leaves a Python exception set.
bool CapturePythonStack(unsigned long thread_ident, std::size_t max_frames, std::vector<FrameInfo>* frames,
                        std::string* error);

// The same walk for other readers of the frames (attribution.h): calls `visit` with each frame,
// innermost first, at most `max_frames` of them (borrowed for the call; the visitor must not run
// Python code either). Returns the number of frames visited; 0 with `error` set like above.
std::size_t VisitPythonStack(unsigned long thread_ident, std::size_t max_frames,
                             const std::function<void(PyFrameObject* frame)>& visit, std::string* error);

// One frame as the report shows it.
FrameInfo DescribeFrame(PyFrameObject* frame);
// UTF-8 of a str, at most 4096 bytes; code points UTF-8 cannot encode become \udcxx escapes ("?" if
// `text` is not a str). Never leaves an exception set.
std::string Utf8(PyObject* text);

}  // namespace loopwatch::shim
