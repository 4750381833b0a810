// Per-loop recording state and the registry that finds it from a loop object.
//
// Every instrumented callback asks "which ring does this loop write to?". The answer is cached per
// thread (a loop runs on one thread at a time), so the common case is one pointer compare. A loop's
// ring file is created lazily by its first callback, on the loop thread, which is therefore the only
// writer of that ring (the SPSC contract). All of this runs under the GIL: no locks are needed.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "loopwatch/layout.h"
#include "attribution.h"
#include "busy_time.h"
#include "callback_key.h"
#include "callback_limit.h"
#include "current_sample.h"
#include "inflight.h"
#include "ring_file.h"

namespace loopwatch::shim {

class Watchdog;

struct ShimConfig {
  std::string dir = "/dev/shm/loopwatch";
  PyObject* service = nullptr;  // str, or callable -> str, resolved when a ring is created
  protocol::RingGeometry geometry = protocol::kDefaultGeometry;
  PyObject* namer = nullptr;  // loopwatch._names.describe(callback) -> str; called once per new key
};
ShimConfig& Config();

class LoopState {
 public:
  LoopState(uint32_t loop_id, protocol::LoopKind kind) : loop_id_(loop_id), kind_(kind) {}
  LoopState(const LoopState&) = delete;
  LoopState& operator=(const LoopState&) = delete;
  ~LoopState();

  // Intrusive reference count (GIL-protected): the registry holds one, every uvloop trampoline one.
  void Retain() { ++refs_; }
  void Release() {
    if (--refs_ == 0) delete this;
  }

  // Loop thread. The ring, created on first use; nullptr when recording is off for this loop.
  RingFile* Ring() {
    if (ring_ != nullptr) return ring_;
    if (ring_failed_ || closed_) return nullptr;
    return OpenRing();
  }

  // Loop thread, once per callback: the ring to record this callback into, or nullptr when there is
  // none or recording is paused (by the agent or the app: one relaxed load of the control word).
  RingFile* RecordingRing() {
    RingFile* ring = Ring();
    if (ring == nullptr) return nullptr;
    return NeedsAttention(ring->header()) ? RecordingRingSlow(ring) : ring;
  }
  // The same for a ring the caller already holds (Ring() returned it).
  bool Recording(RingFile* ring) { return !NeedsAttention(ring->header()) || RecordingRingSlow(ring) != nullptr; }

  // Loop thread. Name id of a callback: a direct-mapped cache probe, then a hash lookup of its key,
  // and the namer on the first sight only.
  uint32_t NameId(PyObject* callback) {
    const CallbackKey key = KeyOf(callback);
    RecentName& slot = recent_names_[(key.key * 0x9E3779B97F4A7C15ULL) >> (64 - kRecentNameBits)];
    if (slot.key == key.key && key.key != 0) return slot.id;
    const uint32_t id = NameIdSlow(callback, key);
    slot = {key.key, id};
    return id;
  }

  // Loop thread, after Ring() returned non-null.
  void Push(const protocol::Sample& sample) {
    CheckCallbackLimit(sample, ring_->header(), loop_id_, kind_);  // one compare; see callback_limit.h
    if (ring_->writer().TryPush(sample)) ++samples_written_;
  }

  // Loop thread, after a timed callback returned: clears the in-flight slot it owns and pushes its
  // sample. Ring() again: the callback may have closed the ring (nothing is recorded; false) or forked
  // (the ring is the child's new one, whose slot this callback never took).
  bool FinishCallback(const TimedCallback& timed) {
    RingFile* now = Ring();
    if (now == nullptr) return false;
    if (timed.inflight == now->header()) EndInflight(timed.inflight);
    Push(timed.sample);
    return true;
  }

  // Loop gone: the watchdog thread is stopped (the GIL is released while waiting for it, if it may
  // be waiting for the GIL), then the ring is closed for the agent to drain and remove.
  void Close();
  void AbandonAfterFork();  // in a fork child: the parent's ring and watchdog thread are not ours
  // GIL held, around os.fork() in the parent (os.register_at_fork): the watchdog thread is stopped
  // before (Stop may release the GIL) and started again after (ResumeWatchdogsAfterFork).
  void SuspendWatchdogForFork();
  void ScheduleWatchdogRestart();   // marks the ring so that the loop's next callback restarts it
  void RestartSuspendedWatchdog();  // any thread; no-op unless suspended
  void SetPausedByApp(bool paused);  // sets or clears kControlPausedByApp in the ring's control word

  uint32_t loop_id() const { return loop_id_; }
  protocol::LoopKind kind() const { return kind_; }
  bool closed() const { return closed_; }
  PyObject* StatusDict() const;  // new reference, for loopwatch.status()
  void AdoptReference(PyObject* owned) { key_owners_.push_back(owned); }  // released with the state

  // uvloop: callbacks handed to the loop and not yet run or discarded (the handle count).
  int64_t pending = 0;
  // asyncio: the loop's _ready deque and _scheduled list (strong refs), read without attribute
  // lookups. A cached object whose only reference is ours was replaced by the loop: refetch it.
  // (Never the loop's __dict__: materializing it would slow every attribute access asyncio makes.)
  PyObject* ready_queue = nullptr;
  PyObject* scheduled_heap = nullptr;
  // After run_forever: the loop is not running, so nothing reads them until the next run refetches.
  void ReleaseLoopCaches() {
    Py_CLEAR(ready_queue);
    Py_CLEAR(scheduled_heap);
  }
  BusyState busy;  // loop thread only

 private:
  RingFile* OpenRing();
  RingFile* RecordingRingSlow(RingFile* ring);  // a pause bit or kControlShimWork is set
  uint32_t NameIdSlow(PyObject* callback, const CallbackKey& key);

  static constexpr unsigned kRecentNameBits = 6;
  struct RecentName {
    uintptr_t key;
    uint32_t id;
  };
  RecentName recent_names_[1u << kRecentNameBits] = {};  // keys here are also in name_ids_ (pinned)

  uint32_t loop_id_;
  protocol::LoopKind kind_;
  int refs_ = 1;
  RingFile* ring_ = nullptr;
  Watchdog* watchdog_ = nullptr;  // the ring's stall-capture thread; nullptr if none (see watchdog.h)
  std::string watchdog_error_;    // why there is none
  unsigned long loop_thread_ident_ = 0;  // PyThread_get_thread_ident() of the thread that made the ring
  bool watchdog_suspended_ = false;      // stopped for a fork in progress
  uint32_t watchdog_answered_ = 0;       // the last request the suspended watchdog answered
  bool ring_failed_ = false;
  bool closed_ = false;
  std::string error_;
  std::string path_;
  uint64_t samples_written_ = 0;
  std::unordered_map<uintptr_t, uint32_t> name_ids_;
  AttributionMemo attribution_;  // the watchdog's names and table slots in this ring
  std::vector<PyObject*> key_owners_;  // strong refs: a key's address cannot be reused while cached
};

// The state for `loop` (borrowed), created on first sight. Never raises; nullptr if the loop cannot
// be tracked (then the callback simply runs unrecorded).
LoopState* StateForLoop(PyObject* loop, protocol::LoopKind kind);

// Bumped whenever a LoopState may have been closed or replaced (loop death, fork, reconfigure), so
// that per-thread caches revalidate.
extern uint64_t g_registry_generation;

struct ThreadLoopCache {
  PyObject* loop = nullptr;
  LoopState* state = nullptr;
  uint64_t generation = 0;
};
// initial-exec: a plain %fs-relative load instead of a __tls_get_addr call per callback (the
// extension is dlopen'ed; 24 bytes fit glibc's static TLS surplus).
extern thread_local ThreadLoopCache t_loop_cache __attribute__((tls_model("initial-exec")));

inline LoopState* CachedStateForLoop(PyObject* loop, protocol::LoopKind kind) {
  ThreadLoopCache& c = t_loop_cache;
  if (c.loop == loop && c.generation == g_registry_generation) return c.state;
  LoopState* state = StateForLoop(loop, kind);
  c.loop = loop;
  c.state = state;
  c.generation = g_registry_generation;
  return state;
}

PyObject* RegistryStatusList();  // new reference: one dict per tracked loop
void CloseAllRings();  // every ring is handed over to the agent (or removed); loops keep running unrecorded
// At interpreter exit: no new watchdog threads from now on, then CloseAllRings(). Every watchdog
// thread is thereby joined before finalization starts (none can be left waiting for the GIL).
void ShutdownRings();
// loopwatch.pause()/resume(): sets or clears kControlPausedByApp on every ring of the process and
// remembers it, so that rings created later start paused.
void SetProcessPaused(bool paused);
bool ProcessPaused();
LoopState* FindStateForLoop(PyObject* loop);  // borrowed loop; nullptr if never seen
void InstallForkHandler();
// os.register_at_fork(before=..., after_in_parent=...): every watchdog thread is stopped before the
// parent forks, and started again after: at once up to CPython 3.12, with each loop's next callback
// from 3.13 on (GIL held; the first may release it).
void SuspendWatchdogsForFork();
void ResumeWatchdogsAfterFork();
bool AnyRecordingFailed(std::string* first_error);

}  // namespace loopwatch::shim
