// LoopState and the loop registry (see loop_state.h).
#include "loop_state.h"

#include <pthread.h>

#include <cstdio>

namespace loopwatch::shim {

ShimConfig& Config() {
  static ShimConfig config;
  return config;
}

uint64_t g_registry_generation = 1;
thread_local ThreadLoopCache t_loop_cache __attribute__((tls_model("initial-exec")));

namespace {

constexpr std::size_t kMaxCachedKeys = 8192;  // beyond it, new callbacks are named "other" uncached

struct Registry {
  std::unordered_map<PyObject*, LoopState*> by_loop;  // key: the loop's address while it is alive
  uint32_t next_loop_id = 1;
  bool warned = false;
  std::string first_error;
};
Registry& TheRegistry() {
  static auto* registry = new Registry;  // never destroyed: weakref callbacks may run at exit
  return *registry;
}

// Weakref callback: the loop is being destroyed, so its address is about to be free for reuse.
PyObject* OnLoopCollected(PyObject* key, PyObject* /*weakref*/) {
  auto* loop = static_cast<PyObject*>(PyLong_AsVoidPtr(key));
  Registry& r = TheRegistry();
  if (auto it = r.by_loop.find(loop); it != r.by_loop.end()) {
    it->second->Close();
    it->second->Release();
    r.by_loop.erase(it);
    ++g_registry_generation;
  }
  Py_RETURN_NONE;
}
PyMethodDef g_on_loop_collected = {"_loopwatch_loop_collected", OnLoopCollected, METH_O, nullptr};

void AfterForkInChild() {
  // Runs in the child right after fork(), before any Python code: forget every ring of the parent.
  for (auto& [loop, state] : TheRegistry().by_loop) state->AbandonAfterFork();
  ++g_registry_generation;
}

}  // namespace

LoopState::~LoopState() {
  Close();
  for (PyObject* owner : key_owners_) Py_DECREF(owner);
  Py_XDECREF(ready_queue);
  Py_XDECREF(scheduled_heap);
}

static std::string ServiceName() {
  PyObject* service = Config().service;
  PyObject* value = service == nullptr ? nullptr : PyUnicode_Check(service) ? Py_NewRef(service) : PyObject_CallNoArgs(service);
  const char* utf8 = value != nullptr && PyUnicode_Check(value) ? PyUnicode_AsUTF8(value) : nullptr;
  std::string name = utf8 != nullptr && *utf8 != '\0' ? utf8 : "python";
  if (PyErr_Occurred()) PyErr_Clear();
  Py_XDECREF(value);
  return name;
}

RingFile* LoopState::OpenRing() {
  const ShimConfig& config = Config();
  RingIdentity identity{config.dir, ServiceName(), loop_id_, kind_, config.geometry};
  ring_ = RingFile::Create(identity, &error_);
  if (ring_ == nullptr) {
    ring_failed_ = true;
    Registry& r = TheRegistry();
    if (!r.warned) {
      // One clear line per process, never an exception into the application.
      r.warned = true;
      r.first_error = error_;
      std::fprintf(stderr, "loopwatch: recording disabled for this process's loops: %s\n", error_.c_str());
    }
    return nullptr;
  }
  path_ = ring_->path();
  return ring_;
}

uint32_t LoopState::NameIdSlow(PyObject* callback, const CallbackKey& key) {
  if (auto it = name_ids_.find(key.key); it != name_ids_.end()) return it->second;
  if (name_ids_.size() >= kMaxCachedKeys) return protocol::kNameIdOther;
  uint32_t id = protocol::kNameIdOther;
  PyObject* name = Config().namer != nullptr ? PyObject_CallOneArg(Config().namer, callback) : nullptr;
  Py_ssize_t length = 0;
  const char* utf8 = name != nullptr && PyUnicode_Check(name) ? PyUnicode_AsUTF8AndSize(name, &length) : nullptr;
  if (utf8 != nullptr) {
    id = ring_->names().Append(std::string_view(utf8, static_cast<std::size_t>(length)));
  }
  // The namer must never raise into the loop; a failure names the callback "other".
  if (PyErr_Occurred()) PyErr_Clear();
  Py_XDECREF(name);
  name_ids_.emplace(key.key, id);
  if (key.owner != nullptr) key_owners_.push_back(Py_NewRef(key.owner));  // pins the key's address
  return id;
}

void LoopState::Close() {
  if (closed_) return;
  closed_ = true;
  if (ring_ != nullptr) {
    ring_->Close();
    delete ring_;
    ring_ = nullptr;
  }
}

void LoopState::AbandonAfterFork() {
  if (ring_ != nullptr) {
    ring_->AbandonAfterFork();
    delete ring_;
    ring_ = nullptr;
  }
  // The child writes a ring of its own, with names of its own, on its next callback.
  ring_failed_ = false;
  error_.clear();
  path_.clear();
  samples_written_ = 0;
  busy = BusyState{};
  name_ids_.clear();
  for (RecentName& slot : recent_names_) slot = {};
  // key_owners_ keep their references: dropping them here would run Python code inside fork.
}

PyObject* LoopState::StatusDict() const {
  const char* state = closed_ ? "closed" : ring_ != nullptr ? "recording" : ring_failed_ ? "failed" : "idle";
  return Py_BuildValue("{s:I,s:s,s:s,s:s,s:s,s:K,s:K,s:L,s:O}", "loop_id", loop_id_, "kind",
                       kind_ == protocol::LoopKind::kUvloop ? "uvloop" : "asyncio", "state", state, "file", path_.c_str(),
                       "error", error_.c_str(), "samples_written", static_cast<unsigned long long>(samples_written_),
                       "dropped",
                       static_cast<unsigned long long>(ring_ != nullptr ? ring_->header()->dropped.load(std::memory_order_relaxed) : 0),
                       "pending", static_cast<long long>(pending), "busy_time", busy.available ? Py_True : Py_False);
}

LoopState* StateForLoop(PyObject* loop, protocol::LoopKind kind) {
  Registry& r = TheRegistry();
  if (auto it = r.by_loop.find(loop); it != r.by_loop.end()) return it->second;
  PyObject* key = PyLong_FromVoidPtr(loop);
  PyObject* callback = key != nullptr ? PyCFunction_New(&g_on_loop_collected, key) : nullptr;
  PyObject* weakref = callback != nullptr ? PyWeakref_NewRef(loop, callback) : nullptr;
  Py_XDECREF(key);
  Py_XDECREF(callback);
  if (weakref == nullptr) {
    PyErr_Clear();  // a loop we cannot watch die is not recorded (its address could be reused)
    return nullptr;
  }
  auto* state = new LoopState(r.next_loop_id++, kind);
  // The weakref object must outlive the loop for its callback to fire: the state owns it, as a
  // key owner (released when the state is destroyed).
  state->AdoptReference(weakref);
  r.by_loop.emplace(loop, state);
  return state;
}

LoopState* FindStateForLoop(PyObject* loop) {
  auto& by_loop = TheRegistry().by_loop;
  auto it = by_loop.find(loop);
  return it == by_loop.end() ? nullptr : it->second;
}

void CloseAllRings() {
  for (auto& [loop, state] : TheRegistry().by_loop) state->Close();
  ++g_registry_generation;
}

PyObject* RegistryStatusList() {
  PyObject* list = PyList_New(0);
  if (list == nullptr) return nullptr;
  for (auto& [loop, state] : TheRegistry().by_loop) {
    PyObject* d = state->StatusDict();
    if (d == nullptr || PyList_Append(list, d) != 0) {
      Py_XDECREF(d);
      Py_DECREF(list);
      return nullptr;
    }
    Py_DECREF(d);
  }
  return list;
}

bool AnyRecordingFailed(std::string* first_error) {
  const Registry& r = TheRegistry();
  if (r.first_error.empty()) return false;
  *first_error = r.first_error;
  return true;
}

void InstallForkHandler() {
  static bool installed = false;
  if (!installed) installed = pthread_atfork(nullptr, nullptr, AfterForkInChild) == 0;
}

}  // namespace loopwatch::shim
