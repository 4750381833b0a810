// LoopState and the loop registry (see loop_state.h).
#include "loop_state.h"

#include <pthread.h>

#include <cstdio>

#include "watchdog.h"

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
  bool paused_by_app = false;     // loopwatch.pause(): new rings start paused too
  bool watchdogs_enabled = true;  // false from ShutdownRings on (interpreter exit)
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
    // Out of the registry first: Close may release the GIL (watchdog.h), and another thread may
    // then change the map, which would invalidate `it`.
    LoopState* state = it->second;
    r.by_loop.erase(it);
    ++g_registry_generation;
    state->Close();
    state->Release();
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
      // One clear line per process, never an exception into the application. Not "for this
      // process": loops whose rings were made before (a directory that filled up) still record.
      r.warned = true;
      r.first_error = error_;
      std::fprintf(stderr, "loopwatch: recording disabled for loop %u (and later loops whose ring cannot be made): %s\n",
                   loop_id_, error_.c_str());
    }
    return nullptr;
  }
  path_ = ring_->path();
  Registry& r = TheRegistry();
  // Nothing can be recorded yet (this is the loop thread, before its first sample): a paused
  // process's new ring is paused before it records anything. fetch_or keeps the agent's bits.
  if (r.paused_by_app) ring_->header()->control.fetch_or(protocol::kControlPausedByApp, std::memory_order_relaxed);
  loop_thread_ident_ = PyThread_get_thread_ident();
  if (r.watchdogs_enabled) {
    watchdog_ = Watchdog::Start(ring_, &attribution_, loop_thread_ident_, &watchdog_error_);
  } else {
    watchdog_error_ = "the interpreter is exiting";
  }
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
  closed_ = true;  // first: Stop may release the GIL, and a second Close must then do nothing
  if (watchdog_ != nullptr) {
    // Before the ring is unmapped: the thread reads the header and writes the report region.
    Watchdog* watchdog = watchdog_;
    watchdog_ = nullptr;
    watchdog->Stop();
    delete watchdog;
  }
  if (ring_ != nullptr) {
    ring_->Close();
    delete ring_;
    ring_ = nullptr;
  }
}

void LoopState::AbandonAfterFork() {
  if (watchdog_ != nullptr) {
    // The thread was not copied into this child, and its std::thread must be neither joined nor
    // destroyed here: the object is leaked (a few hundred bytes per ring the parent had).
    watchdog_->Abandon();
    watchdog_ = nullptr;
  }
  watchdog_suspended_ = false;  // the parent's watchdog is the parent's to restart
  watchdog_error_.clear();
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
  attribution_ = AttributionMemo{};
  for (RecentName& slot : recent_names_) slot = {};
  // key_owners_ keep their references: dropping them here would run Python code inside fork.
}

void LoopState::SuspendWatchdogForFork() {
  if (watchdog_ == nullptr || closed_) return;
  Watchdog* watchdog = watchdog_;
  watchdog_ = nullptr;  // first: Stop may release the GIL, and Close must then find no thread to stop
  watchdog->Stop();
  watchdog_answered_ = watchdog->answered();
  delete watchdog;
  watchdog_suspended_ = true;
}

void LoopState::ScheduleWatchdogRestart() {
  // The ring may have been closed while Suspend released the GIL: then there is nothing to watch.
  if (!watchdog_suspended_ || ring_ == nullptr || closed_) return;
  // Read-modify-write: the agent changes its own bits of the same word concurrently.
  ring_->header()->control.fetch_or(protocol::kControlShimWork, std::memory_order_relaxed);
}

void LoopState::RestartSuspendedWatchdog() {
  if (!watchdog_suspended_) return;
  watchdog_suspended_ = false;
  if (ring_ == nullptr || closed_ || !TheRegistry().watchdogs_enabled) return;
  watchdog_error_.clear();
  watchdog_ = Watchdog::Start(ring_, &attribution_, loop_thread_ident_, &watchdog_error_, watchdog_answered_);
}

RingFile* LoopState::RecordingRingSlow(RingFile* ring) {
  protocol::RingHeader* header = ring->header();
  if ((header->control.load(std::memory_order_relaxed) & protocol::kControlShimWork) != 0) {
    header->control.fetch_and(~protocol::kControlShimWork, std::memory_order_relaxed);
    RestartSuspendedWatchdog();
  }
  return Paused(header) ? nullptr : ring;
}

void LoopState::SetPausedByApp(bool paused) {
  if (ring_ == nullptr) return;
  // Read-modify-write: the agent changes its own bits of the same word concurrently.
  if (paused) {
    ring_->header()->control.fetch_or(protocol::kControlPausedByApp, std::memory_order_relaxed);
  } else {
    ring_->header()->control.fetch_and(~protocol::kControlPausedByApp, std::memory_order_relaxed);
  }
}

PyObject* LoopState::StatusDict() const {
  const char* state = closed_ ? "closed" : ring_ != nullptr ? "recording" : ring_failed_ ? "failed" : "idle";
  const protocol::RingHeader* h = ring_ != nullptr ? ring_->header() : nullptr;
  // Relaxed: a snapshot for humans and tests.
  const uint32_t control = h != nullptr ? h->control.load(std::memory_order_relaxed) : 0;
  const std::string watchdog = watchdog_ != nullptr      ? "running"
                               : watchdog_suspended_   ? "stopped for a fork: starts again with the loop's next callback"
                               : watchdog_error_.empty() ? "off"
                                                         : "off: " + watchdog_error_;
  return Py_BuildValue("{s:I,s:s,s:s,s:s,s:s,s:K,s:K,s:L,s:O,s:s,s:O,s:O,s:O,s:s,s:K}", "loop_id", loop_id_, "kind",
                       kind_ == protocol::LoopKind::kUvloop ? "uvloop" : "asyncio", "state", state, "file", path_.c_str(),
                       "error", error_.c_str(), "samples_written", static_cast<unsigned long long>(samples_written_),
                       "dropped", static_cast<unsigned long long>(h != nullptr ? h->dropped.load(std::memory_order_relaxed) : 0),
                       "pending", static_cast<long long>(pending), "busy_time", busy.available ? Py_True : Py_False,
                       "busy_time_detail", busy.detail.c_str(),
                       "agent_attached", (control & protocol::kControlValid) != 0 ? Py_True : Py_False, "paused_by_agent",
                       (control & protocol::kControlPaused) != 0 ? Py_True : Py_False, "paused_by_app",
                       (control & protocol::kControlPausedByApp) != 0 ? Py_True : Py_False, "watchdog", watchdog.c_str(),
                       "watchdog_wakeups",
                       static_cast<unsigned long long>(h != nullptr ? h->watchdog_wakeups.load(std::memory_order_relaxed) : 0));
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

namespace {
// Calls `act` on every tracked state, over a retained copy: `act` may release the GIL.
template <typename Act>
void ForEachState(Act act) {
  std::vector<LoopState*> states;
  states.reserve(TheRegistry().by_loop.size());
  for (auto& [loop, state] : TheRegistry().by_loop) {
    state->Retain();
    states.push_back(state);
  }
  for (LoopState* state : states) act(state);
  for (LoopState* state : states) state->Release();
}
}  // namespace

void SuspendWatchdogsForFork() {
  ForEachState([](LoopState* state) { state->SuspendWatchdogForFork(); });
}

void ResumeWatchdogsAfterFork() {
#if PY_VERSION_HEX >= 0x030D0000
  // Not now: CPython 3.13+ counts the process's threads for its fork() warning after the after-fork
  // hooks ran, and nothing runs between that count and os.fork()'s return. Each loop's next callback
  // starts its watchdog again (kControlShimWork).
  for (auto& [loop, state] : TheRegistry().by_loop) state->ScheduleWatchdogRestart();  // never releases the GIL
#else
  // 3.12 warns before the after-fork hooks run; 3.10 and 3.11 do not warn: start them again now.
  ForEachState([](LoopState* state) { state->RestartSuspendedWatchdog(); });
#endif
}

void CloseAllRings() {
  ForEachState([](LoopState* state) { state->Close(); });
  ++g_registry_generation;
}

void ShutdownRings() {
  TheRegistry().watchdogs_enabled = false;
  CloseAllRings();
}

void SetProcessPaused(bool paused) {
  Registry& r = TheRegistry();
  r.paused_by_app = paused;
  for (auto& [loop, state] : r.by_loop) state->SetPausedByApp(paused);  // never releases the GIL
}

bool ProcessPaused() { return TheRegistry().paused_by_app; }

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
