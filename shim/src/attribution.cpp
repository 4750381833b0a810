// Site, handler and endpoint of one stack sample (see attribution.h).
#include "attribution.h"

#include "py_compat.h"
#include "stack_capture.h"

namespace loopwatch::shim {
namespace {

// Frames walked per sample: deep enough for any server + framework + app stack.
constexpr std::size_t kMaxWalkedFrames = 512;

// Length of the longest prefix of `text` in `prefixes` (0: none).
std::size_t LongestPrefix(const std::string& text, const std::vector<std::string>& prefixes) {
  std::size_t longest = 0;
  for (const std::string& prefix : prefixes) {
    if (prefix.size() > longest && text.compare(0, prefix.size(), prefix) == 0) longest = prefix.size();
  }
  return longest;
}

std::string RelativePath(const std::string& file, const std::vector<std::string>& roots) {
  for (const std::string& root : roots) {  // longest first
    if (file.size() > root.size() && file.compare(0, root.size(), root) == 0) return file.substr(root.size());
  }
  return file;
}

// The frame's module: __name__ of its globals ("?" if there is none).
std::string ModuleName(PyFrameObject* frame) {
  static PyObject* const name_key = PyUnicode_InternFromString("__name__");
  PyObject* globals = FrameGlobals(frame);
  PyObject* name = globals != nullptr && PyDict_Check(globals) ? PyDict_GetItemWithError(globals, name_key) : nullptr;
  std::string module = name != nullptr && PyUnicode_Check(name) ? Utf8(name) : std::string("?");
  Py_XDECREF(globals);
  PyErr_Clear();
  return module;
}

std::string FunctionOf(PyFrameObject* frame, const FrameInfo& info) { return ModuleName(frame) + "." + info.function; }

std::string SiteOf(PyFrameObject* frame, const FrameInfo& info, const AttributionRules& rules) {
  return FunctionOf(frame, info) + " (" + RelativePath(info.file, rules.roots) + ":" + std::to_string(info.line) + ")";
}

bool CodeHasVariable(PyFrameObject* frame, const char* name) {
  PyCodeObject* code = PyFrame_GetCode(frame);
  PyObject* names = CodeVarnames(code);
  bool found = false;
  if (names != nullptr && PyTuple_Check(names)) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names) && !found; ++i) {
      PyObject* item = PyTuple_GET_ITEM(names, i);
      found = PyUnicode_Check(item) && PyUnicode_CompareWithASCIIString(item, name) == 0;
    }
  }
  Py_XDECREF(names);
  Py_DECREF(code);
  PyErr_Clear();
  return found;
}

// `object`'s own attribute `name` from its instance dict (never a property or __getattr__: no code
// of the app runs). New reference or nullptr.
PyObject* InstanceAttribute(PyObject* object, const char* name) {
  if (object == nullptr || !PyType_HasFeature(Py_TYPE(object), Py_TPFLAGS_HEAPTYPE)) return nullptr;
  PyObject* dict = PyObject_GenericGetDict(object, nullptr);
  PyObject* value = dict != nullptr && PyDict_Check(dict) ? Py_XNewRef(PyDict_GetItemString(dict, name)) : nullptr;
  Py_XDECREF(dict);
  PyErr_Clear();
  return value;
}

std::string StringAttribute(PyObject* object, const char* name) {
  PyObject* value = InstanceAttribute(object, name);
  std::string text = value != nullptr && PyUnicode_Check(value) ? Utf8(value) : std::string();
  Py_XDECREF(value);
  return text;
}

// "module.qualname" of a route endpoint (a function, a bound method or a class); "" otherwise.
std::string CallableName(PyObject* callable) {
  if (PyMethod_Check(callable)) callable = PyMethod_GET_FUNCTION(callable);
  PyObject* module = nullptr;
  PyObject* qualname = nullptr;
  if (PyFunction_Check(callable)) {
    module = Py_XNewRef(PyFunction_GetModule(callable));
    qualname = Py_XNewRef(reinterpret_cast<PyFunctionObject*>(callable)->func_qualname);
  } else if (PyType_Check(callable)) {
    auto* type = reinterpret_cast<PyTypeObject*>(callable);
    if (PyType_HasFeature(type, Py_TPFLAGS_HEAPTYPE)) {
      auto* heap = reinterpret_cast<PyHeapTypeObject*>(type);
      qualname = Py_XNewRef(heap->ht_qualname);
      module = type->tp_dict != nullptr ? Py_XNewRef(PyDict_GetItemString(type->tp_dict, "__module__")) : nullptr;
    }
  }
  std::string name;
  if (qualname != nullptr && PyUnicode_Check(qualname)) {
    name = (module != nullptr && PyUnicode_Check(module) ? Utf8(module) + "." : std::string()) + Utf8(qualname);
  }
  Py_XDECREF(module);
  Py_XDECREF(qualname);
  PyErr_Clear();
  return name;
}

std::string RouteTemplate(PyObject* route) {
  std::string path = StringAttribute(route, "path_format");  // the template without converters
  return path.empty() ? StringAttribute(route, "path") : path;
}

// The template of the route in scope["router"].routes whose endpoint is `endpoint`.
std::string TemplateByEndpoint(PyObject* router, PyObject* endpoint) {
  PyObject* routes = InstanceAttribute(router, "routes");
  std::string path;
  if (routes != nullptr && PyList_Check(routes)) {
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(routes) && path.empty(); ++i) {
      PyObject* route = PyList_GET_ITEM(routes, i);
      PyObject* its = InstanceAttribute(route, "endpoint");
      if (its == endpoint) path = RouteTemplate(route);
      Py_XDECREF(its);
    }
  }
  Py_XDECREF(routes);
  return path;
}

// From an ASGI scope: true once the handler or the endpoint is known.
bool FromScope(PyObject* scope, SampleNames* names) {
  if (scope == nullptr || !PyDict_Check(scope)) return false;
  PyObject* type = PyDict_GetItemString(scope, "type");  // borrowed (GetItemString swallows errors)
  if (type == nullptr || !PyUnicode_Check(type)) return false;
  const bool http = PyUnicode_CompareWithASCIIString(type, "http") == 0;
  if (!http && PyUnicode_CompareWithASCIIString(type, "websocket") != 0) return false;
  PyObject* method = PyDict_GetItemString(scope, "method");
  PyObject* route = PyDict_GetItemString(scope, "route");
  PyObject* endpoint = PyDict_GetItemString(scope, "endpoint");
  PyObject* router = PyDict_GetItemString(scope, "router");
  std::string path = route != nullptr ? RouteTemplate(route) : std::string();
  if (path.empty() && endpoint != nullptr && router != nullptr) path = TemplateByEndpoint(router, endpoint);
  if (endpoint == nullptr && route != nullptr) {
    PyObject* its = InstanceAttribute(route, "endpoint");
    if (its != nullptr) names->handler = CallableName(its);
    Py_XDECREF(its);
  } else if (endpoint != nullptr) {
    names->handler = CallableName(endpoint);
  }
  if (!path.empty()) {
    const std::string verb = !http ? "WS" : method != nullptr && PyUnicode_Check(method) ? Utf8(method) : "?";
    names->endpoint = verb + " " + path;
  }
  PyErr_Clear();
  return !names->endpoint.empty() || !names->handler.empty();
}

}  // namespace

uint32_t AttributionMemo::NameId(protocol::NameTableWriter& table, const std::string& name) {
  if (name.empty()) return 0;
  if (auto it = name_ids.find(name); it != name_ids.end()) return it->second;
  const uint32_t id = table.Append(name);
  // A full table answers "other" for good: remembered too, so it is not retried every sample.
  name_ids.emplace(name, id);
  return id;
}

uint32_t AttributionMemo::Slot(protocol::AttributionTableWriter& writer, const protocol::AttributionKey& key) {
  if (auto it = slots.find(key); it != slots.end()) return it->second;
  const uint32_t slot = writer.Append(key);
  slots.emplace(key, slot);
  return slot;
}

AttributionRules& Rules() {
  static AttributionRules rules;
  return rules;
}

bool IsUserFile(const std::string& file, const AttributionRules& rules) {
  // The most specific rule wins: site-packages inside the standard library's directory (a pyenv or
  // python.org layout) is not the standard library, a framework inside site-packages is skipped.
  const std::size_t user = LongestPrefix(file, rules.user_prefixes);
  const std::size_t skip = LongestPrefix(file, rules.skip_prefixes);
  const std::size_t library = LongestPrefix(file, rules.library_prefixes);
  if (user == 0 && skip == 0 && library == 0) return true;  // the application's own tree
  return user >= skip && user >= library;
}

bool SampleStack(unsigned long thread_ident, std::size_t max_frames, SampleNames* names,
                 std::vector<FrameInfo>* frames, std::string* error) {
  const AttributionRules& rules = Rules();
  static PyObject* const scope_name = PyUnicode_InternFromString("scope");
  std::string innermost_site;
  std::string outermost_user;
  bool scope_found = false;
  const std::size_t visited = VisitPythonStack(
      thread_ident, kMaxWalkedFrames,
      [&](PyFrameObject* frame) {
        FrameInfo info = DescribeFrame(frame);
        if (IsUserFile(info.file, rules)) {
          if (names->site.empty()) names->site = SiteOf(frame, info, rules);
          outermost_user = FunctionOf(frame, info);
        }
        if (innermost_site.empty()) innermost_site = SiteOf(frame, info, rules);
        if (!scope_found && CodeHasVariable(frame, "scope")) {
          PyObject* scope = FrameVariable(frame, scope_name);
          SampleNames from_scope;
          if (FromScope(scope, &from_scope)) {
            scope_found = true;
            names->endpoint = std::move(from_scope.endpoint);
            names->handler = std::move(from_scope.handler);
          }
          Py_XDECREF(scope);
        }
        if (frames != nullptr && frames->size() < max_frames) frames->push_back(std::move(info));
      },
      error);
  if (visited == 0) return false;
  if (names->site.empty()) names->site = innermost_site;  // no frame of the user's: the innermost one
  if (names->handler.empty()) names->handler = outermost_user;
  return true;
}

}  // namespace loopwatch::shim
