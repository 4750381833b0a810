// Reads another thread's Python frames under the GIL (see stack_capture.h).
#include "stack_capture.h"

#include <frameobject.h>

#include "py_compat.h"

namespace loopwatch::shim {
namespace {

constexpr Py_ssize_t kMaxCopied = 4096;  // bytes of one name copied (the report cuts further)

}  // namespace

// A name that UTF-8 cannot encode (a lone surrogate from a file system name) gets its bad code
// points as \udcxx escapes, so the result is always valid UTF-8.
std::string Utf8(PyObject* text) {
  if (text == nullptr || !PyUnicode_Check(text)) return "?";
  Py_ssize_t size = 0;
  if (const char* utf8 = PyUnicode_AsUTF8AndSize(text, &size)) {
    return std::string(utf8, static_cast<std::size_t>(size < kMaxCopied ? size : kMaxCopied));
  }
  PyErr_Clear();
  PyObject* bytes = PyUnicode_AsEncodedString(text, "utf-8", "backslashreplace");
  if (bytes == nullptr) {
    PyErr_Clear();
    return "?";
  }
  const Py_ssize_t n = PyBytes_GET_SIZE(bytes);
  std::string result(PyBytes_AS_STRING(bytes), static_cast<std::size_t>(n < kMaxCopied ? n : kMaxCopied));
  Py_DECREF(bytes);
  return result;
}

FrameInfo DescribeFrame(PyFrameObject* frame) {
  PyCodeObject* code = PyFrame_GetCode(frame);  // new reference
  FrameInfo info{Utf8(code->co_filename), PyFrame_GetLineNumber(frame), Utf8(CodeQualname(code))};
  Py_DECREF(code);
  return info;
}

bool CapturePythonStack(unsigned long thread_ident, std::size_t max_frames, std::vector<FrameInfo>* frames,
                        std::string* error) {
  VisitPythonStack(thread_ident, max_frames, [frames](PyFrameObject* frame) { frames->push_back(DescribeFrame(frame)); },
                   error);
  return !frames->empty();
}

std::size_t VisitPythonStack(unsigned long thread_ident, std::size_t max_frames,
                             const std::function<void(PyFrameObject* frame)>& visit, std::string* error) {
  std::size_t visited = 0;
  // No collection while we allocate (frame objects, the dict): restored below to what it was.
  const int gc_was_enabled = PyGC_Disable();
  // Every thread's current frame, as sys._current_frames() has it (it holds the runtime's thread
  // list lock while it walks the threads, which a walk of our own could not).
  PyObject* all = _PyThread_CurrentFrames();
  PyObject* key = all != nullptr ? PyLong_FromUnsignedLong(thread_ident) : nullptr;
  PyObject* top = key != nullptr ? PyDict_GetItemWithError(all, key) : nullptr;  // borrowed
  if (top != nullptr && PyFrame_Check(top)) {
    auto* frame = reinterpret_cast<PyFrameObject*>(Py_NewRef(top));
    while (frame != nullptr && visited < max_frames) {
      visit(frame);
      ++visited;
      PyFrameObject* back = PyFrame_GetBack(frame);  // new reference; nullptr at the outermost frame
      Py_DECREF(frame);
      frame = back;
    }
    Py_XDECREF(frame);
  } else if (all == nullptr || key == nullptr || PyErr_Occurred()) {
    *error = "cannot read the threads' frames";
  } else {
    *error = "the loop thread has no Python frames (it ended, or runs no Python code)";
  }
  // The frame objects stay alive: each is also owned by its running frame, so no code runs here.
  Py_XDECREF(key);
  Py_XDECREF(all);
  if (PyErr_Occurred()) PyErr_Clear();
  if (gc_was_enabled) PyGC_Enable();
  return visited;
}

}  // namespace loopwatch::shim
