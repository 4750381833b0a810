// The in-process callback limit: remembers, inside the application's own process, every loop callback
// that ran longer than a configured duration. It exists for the pytest plugin
// (loopwatch/pytest_plugin.py, `pytest --loopwatch-max-callback=50ms`), which must fail the test in
// which such a callback ran. It cannot read the rings for that: a closed loop's ring is removed, and an
// undrained ring fills up and drops samples, while this store sees every sample LoopState::Push sees.
//
// Cost when off (the default, and always in production): one compare against UINT64_MAX per sample,
// which is never true. When on: the same compare; only samples over the limit take the cold path,
// which resolves the name (a scan of the ring's name table) and copies it into a bounded store.
// Everything here runs under the GIL (Push is only called by hooks that hold it): no locks.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstdint>

#include "loopwatch/layout.h"

namespace loopwatch::shim {

// The limit in ticks of the shim's clock (tick_clock.h); UINT64_MAX means off. Invariant: written
// only by SetCallbackLimit, under the GIL; read by every Push, under the GIL.
inline uint64_t g_callback_limit_ticks = UINT64_MAX;

// Cold path: stores one over-limit sample. `header` is the ring the sample belongs to (its name
// table resolves sample.name_id); it is mapped while Push runs.
[[gnu::cold, gnu::noinline]] void RecordOverLimit(const protocol::Sample& sample, const protocol::RingHeader* header,
                                                  uint32_t loop_id, protocol::LoopKind kind);

// The hot-path check, called once per sample by LoopState::Push: one compare, almost never taken.
inline void CheckCallbackLimit(const protocol::Sample& sample, const protocol::RingHeader* header, uint32_t loop_id,
                               protocol::LoopKind kind) {
  if (sample.duration_ticks > g_callback_limit_ticks) [[unlikely]] {
    RecordOverLimit(sample, header, loop_id, kind);
  }
}

// _shim.set_callback_limit(seconds or None): sets (a float or int >= 0) or turns off (None) the limit.
PyObject* SetCallbackLimit(PyObject* module, PyObject* seconds);
// _shim.take_over_limit() -> (list of dicts, missed): the callbacks stored since the last call, in the
// order they ended, and how many more were over the limit but did not fit the store. Clears both.
PyObject* TakeOverLimit(PyObject* module, PyObject* unused);

}  // namespace loopwatch::shim
