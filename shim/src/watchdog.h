// The watchdog: one native thread per ring that sleeps on the ring's capture_request futex
// (protocol v1.2, stall_report.h) and costs nothing until the agent rings it. Two kinds of request:
//   - v1.2 (sample_interval_us == 0): a stall report at once. It counts a wake-up, reads the
//     in-flight slot and the loop thread's kernel state (thread_state.h), writes a thread-state-only
//     report, then takes the GIL, reads the loop thread's Python stack (stack_capture.h) and writes
//     the complete report.
//   - v1.3 arm (protocol/loopwatch/attribution.h): the running callback is slow. It counts one
//     wake-up and samples the loop thread every sample interval until that callback ends (at most
//     sample_limit samples): the kernel state first, then under the GIL the stack, from which
//     attribution.h derives endpoint, handler and site; the time since the previous sample is
//     charged to that key in the attribution table and the current attribution is published. The
//     first sample taken once the callback is stall_after_us old also writes the stall report. A
//     new request ends the sampling of the old one at once.
//
// Threads and the GIL:
//   - Start and Stop are called by Python threads holding the GIL (ring creation, ring close).
//   - The watchdog thread takes the GIL only for the stack, and never while it is being stopped:
//     before PyGILState_Ensure it announces "want GIL" and re-checks the stop flag; Stop sets the flag
//     and then looks at that announcement (both seq_cst, a Dekker pair: at least one side sees the
//     other). Only if the thread may be waiting for the GIL does Stop release the GIL while it waits.
//   - It skips the GIL (a kFailed report) while the interpreter is finalizing. ShutdownRings() stops
//     every watchdog from atexit, before finalization, so none is left waiting for the GIL at exit.
//   - Fork: the thread does not exist in the child; Abandon() forgets it without touching it. Before
//     os.fork() the parent stops its watchdogs and starts them again after it (LoopState): a process
//     that forks has only the threads it would have without loopwatch (CPython 3.12+ warns when a
//     multi-threaded process forks, and a thread copied mid-capture could leave a lock held).
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "loopwatch/attribution.h"
#include "loopwatch/layout.h"
#include "loopwatch/name_table.h"
#include "loopwatch/stall_report.h"
#include "attribution.h"
#include "report_json.h"
#include "thread_state.h"

namespace loopwatch::shim {

class RingFile;

class Watchdog {
 public:
  // Loop thread, GIL held, right after the ring was created (the ring stays mapped and `memo`
  // alive until Stop returns). `python_thread_ident` is PyThread_get_thread_ident() of the loop
  // thread. Returns nullptr with `error` set if the region is unusable or no thread can be started.
  // `answered`: the last request a previous watchdog of this ring answered (0: none), so a restarted
  // watchdog does not answer it again. The ring's name table is written by this thread too, only
  // while it holds the GIL (the loop thread writes it only under the GIL as well).
  static Watchdog* Start(RingFile* ring, AttributionMemo* memo, unsigned long python_thread_ident, std::string* error,
                         uint32_t answered = 0);

  // Only after Stop (a joinable std::thread would terminate the process); never after Abandon.
  ~Watchdog() = default;
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Any thread but the watchdog's own, GIL held or not. Stops and joins the thread; afterwards it
  // touches the ring no more, so the caller may unmap it and delete this object. Waits for the
  // thread to finish a capture in progress (at most a few ms plus the GIL, which it then releases).
  void Stop();
  // In a fork child: the thread was not copied. Leaves the std::thread alone (joining or destroying
  // it would act on the parent's thread id); the caller leaks this object.
  void Abandon() {}
  // After Stop: the last request this watchdog answered (for the next Start on the same ring).
  uint32_t answered() const { return answered_; }

 private:
  Watchdog(RingFile* ring, AttributionMemo* memo, unsigned long python_thread_ident, uint32_t answered);

  void Run();
  void Answer(uint32_t request);
  // v1.3: samples the armed callback until it ends, the limit is reached (and the stall report, if
  // due, is written) or a new request arrives.
  void SampleCallback(uint32_t request, const protocol::ArmRequest& arm);
  // One sample; false once the armed callback is no longer running.
  bool TakeSample(uint32_t request, const protocol::ArmRequest& arm, bool write_report);
  bool StillRunning(uint64_t start_ticks) const;
  // Dekker pair with Stop (see the file comment): the reason not to take the GIL, or nullptr.
  const char* AnnounceGil();
  void WriteStallReport(protocol::ReportFields fields, const ThreadState& thread, const std::vector<FrameInfo>* frames,
                        const std::string& error);

  // The request value answered last (the agent's first request is 1). Written by the thread; read by
  // others only after it was joined, which orders the accesses.
  uint32_t answered_;
  protocol::RingHeader* const header_;
  unsigned char* const region_;  // the report region
  const uint32_t region_capacity_;
  protocol::NameTableWriter& names_;      // the ring's (GIL held)
  AttributionMemo* const memo_;           // the ring's LoopState's (GIL held)
  protocol::AttributionTableWriter table_;  // this thread only; empty for a ring without a table
  // The callback being sampled: what its samples said, and until when its time is charged.
  protocol::Attribution current_;
  uint64_t charged_until_ns_ = 0;
  const int loop_tid_;                // the loop thread's kernel tid (header->loop_thread_id)
  const unsigned long python_ident_;  // the loop thread's Python thread ident
  // Set by Stop, read by the thread before every sleep and before it asks for the GIL. seq_cst with
  // wants_gil_: see the file comment.
  std::atomic<bool> stop_{false};
  // The thread is about to wait for, or holds, the GIL.
  std::atomic<bool> wants_gil_{false};
  // 1 once the thread left Run(): a futex word Stop sleeps on between its wakes of the thread.
  std::atomic<uint32_t> exited_{0};
  std::thread thread_;
};

}  // namespace loopwatch::shim
