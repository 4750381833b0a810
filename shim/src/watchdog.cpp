// The stall watchdog thread (see watchdog.h).
#include "watchdog.h"

#include <pthread.h>
#include <signal.h>

#include <exception>
#include <vector>

#include "clock.h"
#include "loopwatch/futex.h"
#include "loopwatch/stall_report.h"
#include "py_compat.h"
#include "report_json.h"
#include "stack_capture.h"
#include "thread_state.h"

namespace loopwatch::shim {
namespace {

using protocol::ReportFields;
using protocol::ReportStage;

constexpr int kStateReads = 5;                     // /proc reads of the loop thread's state ...
constexpr uint64_t kStateReadIntervalNs = 2'000'000;  // ... 2 ms apart: "R" if any says R
constexpr std::size_t kMaxFrames = 100;
constexpr uint64_t kStopWakeIntervalNs = 1'000'000;  // Stop re-wakes the thread every 1 ms until it left

// This thread holds the GIL: it has a thread state and that state is the one running.
bool HoldsGil() {
  PyThreadState* mine = PyGILState_GetThisThreadState();
  return mine != nullptr && mine == _PyThreadState_UncheckedGet();
}

}  // namespace

Watchdog::Watchdog(protocol::RingHeader* header, unsigned long python_thread_ident, uint32_t answered)
    : answered_(answered),
      header_(header),
      region_(reinterpret_cast<unsigned char*>(header) + header->report_offset),
      region_capacity_(header->report_capacity),
      loop_tid_(header->loop_thread_id),
      python_ident_(python_thread_ident) {}

Watchdog* Watchdog::Start(protocol::RingHeader* header, unsigned long python_thread_ident, std::string* error,
                          uint32_t answered) {
  // Our own header, written by RingFile::Create from the geometry: checked anyway, since the thread
  // would write this region for the life of the ring.
  if (header->report_capacity < protocol::kMinReportCapacity || header->report_offset < sizeof(protocol::RingHeader) ||
      header->report_offset + header->report_capacity > header->ring_offset) {
    *error = "the ring has no usable report region";
    return nullptr;
  }
  auto* watchdog = new Watchdog(header, python_thread_ident, answered);
  // The thread blocks every signal (it inherits the mask): signals stay with the application's
  // threads, and its futex sleep is never interrupted.
  sigset_t all;
  sigset_t previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  try {
    watchdog->thread_ = std::thread([watchdog] { watchdog->Run(); });
  } catch (const std::exception& e) {  // no thread (EAGAIN, no memory): no stall capture, never a raise
    *error = std::string("cannot start the watchdog thread: ") + e.what();
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (!watchdog->thread_.joinable()) {
    delete watchdog;
    return nullptr;
  }
  // Named here, not by the thread itself: the name is in place when Start returns (ps, tests).
  pthread_setname_np(watchdog->thread_.native_handle(), "loopwatch-wd");
  return watchdog;
}

void Watchdog::Run() {
  // Says "left" however Run ends: normally, or by the forced unwinding of pthread_exit, which
  // CPython calls on a thread that gets the GIL while the interpreter finalizes (then Stop, if it is
  // ever called, must not wait for a thread that is gone).
  struct ExitSignal {
    std::atomic<uint32_t>* exited;
    ~ExitSignal() {
      // Pairs with Stop's acquire load: after it, this thread touches neither the ring nor this object.
      exited->store(1, std::memory_order_release);
      protocol::FutexWakeAll(exited);
    }
  } exit_signal{&exited_};
  while (!stop_.load(std::memory_order_seq_cst)) {
    // Pairs with the agent's release store of a new request.
    const uint32_t request = header_->capture_request.load(std::memory_order_acquire);
    if (request == answered_) {
      // Sleeps while the word still holds `answered_`: a request stored before this call makes it
      // return at once. Spurious returns (and Stop's wakes) just go round the loop.
      protocol::FutexWait(&header_->capture_request, answered_);
      continue;
    }
    answered_ = request;
    Answer(request);
  }
}

void Watchdog::Answer(uint32_t request) {
  // Only this thread writes the counter: relaxed (a statistic).
  header_->watchdog_wakeups.fetch_add(1, std::memory_order_relaxed);
  ReportFields fields;
  fields.request = request;
  if (!protocol::ReadInflight(*header_, &fields.callback_start_ticks, &fields.name_id)) {
    fields.callback_start_ticks = 0;  // idle (or the callback ended while we looked)
    fields.name_id = 0;
  }
  const std::size_t room = region_capacity_ - sizeof(protocol::ReportHeader);

  // 1. The kernel's view, before we want the GIL (a spinning thread that must hand the GIL to us
  //    would then look asleep). Published at once: the stack may take a while or never come.
  const ThreadState thread = ReadThreadState(loop_tid_, kStateReads, kStateReadIntervalNs, &stop_);
  fields.captured_unix_ns = UnixNowNs();
  fields.stage = ReportStage::kThreadStateOnly;
  protocol::WriteReport(region_, region_capacity_, fields, ReportJson(thread, nullptr, {}, room));

  // 2. The Python stack, under the GIL. Dekker pair with Stop: we announce, then check the stop flag;
  //    Stop sets the flag, then checks the announcement. If Stop missed the announcement, we see
  //    the flag here and never wait for a GIL that Stop's caller may hold.
  wants_gil_.store(true, std::memory_order_seq_cst);
  const char* skip = stop_.load(std::memory_order_seq_cst) ? "the loop's ring is closing"
                     : InterpreterFinalizing()            ? "the interpreter is finalizing"
                                                          : nullptr;
  std::vector<FrameInfo> frames;
  std::string error;
  if (skip == nullptr) {
    const uint64_t asked = MonotonicNs();
    const PyGILState_STATE gil = PyGILState_Ensure();
    fields.gil_wait_ns = MonotonicNs() - asked;
    CapturePythonStack(python_ident_, kMaxFrames, &frames, &error);
    fields.captured_unix_ns = UnixNowNs();
    PyGILState_Release(gil);
  }
  wants_gil_.store(false, std::memory_order_seq_cst);
  fields.stage = frames.empty() ? ReportStage::kFailed : ReportStage::kComplete;
  protocol::WriteReport(region_, region_capacity_, fields,
                        ReportJson(thread, frames.empty() ? nullptr : &frames, skip != nullptr ? skip : error, room));
}

void Watchdog::Stop() {
  if (!thread_.joinable()) return;
  stop_.store(true, std::memory_order_seq_cst);
  const bool may_wait_for_gil = wants_gil_.load(std::memory_order_seq_cst);
  auto wait_for_exit = [this] {
    // The thread sleeps on capture_request unless it is answering. A wake sent between its check of
    // stop_ and its futex call would be lost (only the agent may change that word), so wake again
    // every millisecond until the thread says it left.
    while (exited_.load(std::memory_order_acquire) == 0) {
      protocol::FutexWakeAll(&header_->capture_request);
      protocol::FutexWait(&exited_, 0, kStopWakeIntervalNs);
    }
    thread_.join();
  };
  if (may_wait_for_gil && HoldsGil()) {
    // The thread may be waiting for the GIL we hold: let it have it while we wait for the thread.
    Py_BEGIN_ALLOW_THREADS wait_for_exit();
    Py_END_ALLOW_THREADS
  } else {
    wait_for_exit();
  }
}

}  // namespace loopwatch::shim
