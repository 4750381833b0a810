// Loop busy time: how long each loop spent outside its poll (running callbacks, and everything no
// callback accounts for: uvloop's write flushes, transport bookkeeping, the loop's own overhead).
// Busy minus the sum of callback durations is the unattributed time DESIGN.md asks to expose. Stored
// in RingHeader::busy_ticks (protocol 1.1); the agent exports it as loopwatch_loop_busy_seconds_total.
//   asyncio: the loop's selector.select is replaced (per loop instance) by a C wrapper that adds the
//            time from each poll's return to the next poll's start.
//   uvloop:  libuv's own idle-time metric (uv_metrics_idle_time, enabled with uv_loop_configure);
//            busy = wall time - idle time, refreshed at most every 10 ms from the sample path. The
//            uv_loop_t is found without knowing uvloop's C layout: the word of the Loop object that
//            points to a uv_loop_t whose `data` is the Loop (uvloop sets it; read without faulting),
//            confirmed by uv_now() == loop.time(). Works for Debian's 0.17 (libuv.so.1) and PyPI's
//            wheels (libuv linked into uvloop.loop, symbols exported).
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstdint>
#include <string>

namespace loopwatch::shim {

class LoopState;

struct BusyState {
  bool probe_tried = false;
  bool available = false;
  std::string detail = "not probed yet";  // for status(): how busy time is measured, or why it is off
  uint64_t busy_ticks = 0;
  uint64_t last_poll_return = 0;  // asyncio: ticks when select() last returned
  void* uv_loop = nullptr;        // uvloop: the uv_loop_t the Loop object owns
  uint64_t uv_idle_base_ns = 0;
  uint64_t uv_wall_base_ns = 0;
  uint64_t next_update = 0;       // uvloop: ticks after which busy_ticks is refreshed
};

// Loop thread. Each is tried once per loop; on any doubt (unknown layout, no libuv symbols) the
// probe stays off and status() says busy time is unavailable.
void InstallAsyncioBusyProbe(LoopState* state, PyObject* loop);
void InstallUvloopBusyProbe(LoopState* state, PyObject* loop);
void SetUvloopLibrary(std::string path);  // Python side, at install: the file of the uvloop.loop module
void UpdateUvloopBusy(LoopState* state, uint64_t now_ticks);

}  // namespace loopwatch::shim
