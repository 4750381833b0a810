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
#include "ring_file.h"
#include "stack_capture.h"

namespace loopwatch::shim {
namespace {

using protocol::ReportFields;
using protocol::ReportStage;

constexpr int kStateReads = 5;                     // /proc reads of the loop thread's state ...
constexpr uint64_t kStateReadIntervalNs = 2'000'000;  // ... 2 ms apart: "R" if any says R
constexpr std::size_t kMaxFrames = 100;
constexpr uint64_t kStopWakeIntervalNs = 1'000'000;  // Stop re-wakes the thread every 1 ms until it left
// A callback that ended while the watchdog waited this long for the GIL held the GIL in native code.
constexpr uint64_t kGilHeldNs = 20'000'000;
constexpr const char* kGilHeldSite = "(native code holding the GIL)";

// This thread holds the GIL: it has a thread state and that state is the one running.
bool HoldsGil() {
  PyThreadState* mine = PyGILState_GetThisThreadState();
  return mine != nullptr && mine == _PyThreadState_UncheckedGet();
}

}  // namespace

Watchdog::Watchdog(RingFile* ring, AttributionMemo* memo, unsigned long python_thread_ident, uint32_t answered)
    : answered_(answered),
      header_(ring->header()),
      region_(reinterpret_cast<unsigned char*>(header_) + header_->report_offset),
      region_capacity_(header_->report_capacity),
      names_(ring->names()),
      memo_(memo),
      loop_tid_(header_->loop_thread_id),
      python_ident_(python_thread_ident) {
  if (header_->attribution_capacity != 0) {
    table_ = protocol::AttributionTableWriter(
        header_, reinterpret_cast<unsigned char*>(header_) + header_->attribution_offset, header_->attribution_capacity);
  }
}

Watchdog* Watchdog::Start(RingFile* ring, AttributionMemo* memo, unsigned long python_thread_ident, std::string* error,
                          uint32_t answered) {
  protocol::RingHeader* header = ring->header();
  // Our own header, written by RingFile::Create from the geometry: checked anyway, since the thread
  // would write this region for the life of the ring.
  if (header->report_capacity < protocol::kMinReportCapacity || header->report_offset < sizeof(protocol::RingHeader) ||
      header->report_offset + header->report_capacity > header->ring_offset) {
    *error = "the ring has no usable report region";
    return nullptr;
  }
  auto* watchdog = new Watchdog(ring, memo, python_thread_ident, answered);
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
    protocol::ArmRequest arm;
    if (!protocol::LoadArm(*header_, request, &arm)) continue;  // overwritten meanwhile: load the newer one
    answered_ = request;
    if (arm.sample_interval_us == 0) {
      Answer(request);
    } else {
      SampleCallback(request, arm);
    }
  }
}

const char* Watchdog::AnnounceGil() {
  // Dekker pair with Stop: we announce, then check the stop flag; Stop sets the flag, then checks the
  // announcement. If Stop missed the announcement, we see the flag here and never wait for a GIL
  // that Stop's caller may hold.
  wants_gil_.store(true, std::memory_order_seq_cst);
  const char* skip = stop_.load(std::memory_order_seq_cst) ? "the loop's ring is closing"
                     : InterpreterFinalizing()            ? "the interpreter is finalizing"
                                                          : nullptr;
  if (skip != nullptr) wants_gil_.store(false, std::memory_order_seq_cst);
  return skip;
}

void Watchdog::WriteStallReport(protocol::ReportFields fields, const ThreadState& thread,
                                const std::vector<FrameInfo>* frames, const std::string& error) {
  const std::size_t room = region_capacity_ - sizeof(protocol::ReportHeader);
  if (fields.stage != ReportStage::kThreadStateOnly) {
    fields.stage = frames == nullptr || frames->empty() ? ReportStage::kFailed : ReportStage::kComplete;
  }
  const bool with_frames = fields.stage == ReportStage::kComplete;
  protocol::WriteReport(region_, region_capacity_, fields, ReportJson(thread, with_frames ? frames : nullptr, error, room));
}

bool Watchdog::StillRunning(uint64_t start_ticks) const {
  uint64_t start = 0;
  uint32_t name = 0;
  return protocol::ReadInflight(*header_, &start, &name) && start == start_ticks;
}

void Watchdog::SampleCallback(uint32_t request, const protocol::ArmRequest& arm) {
  // Only this thread writes the counter: relaxed (a statistic). One wake-up per armed callback.
  header_->watchdog_wakeups.fetch_add(1, std::memory_order_relaxed);
  const uint64_t started_ns = static_cast<uint64_t>(TickClock::Calibration().TicksToNs(arm.start_ticks));
  const uint64_t report_at_ns = started_ns + uint64_t{arm.stall_after_us} * 1000;
  const uint64_t interval_ns = uint64_t{arm.sample_interval_us} * 1000;
  if (arm.start_ticks != current_.start_ticks) {
    current_ = protocol::Attribution{};
    current_.start_ticks = arm.start_ticks;
    // The time before the first sample is charged to the first sample's key: the callback's whole
    // wall time is attributed, up to the last sample.
    charged_until_ns_ = started_ns;
  }  // else: the same callback armed again (a restarted agent): go on charging from the last sample
  bool reported = false;
  while (!stop_.load(std::memory_order_seq_cst) && StillRunning(arm.start_ticks)) {
    const uint64_t now = MonotonicNs();
    const bool report_due = !reported && now >= report_at_ns;
    const bool sample_left = current_.samples < arm.sample_limit;
    if (sample_left || report_due) {
      if (!TakeSample(request, arm, report_due)) return;
      reported = reported || report_due;
    } else if (reported) {
      return;  // the limit is reached and nothing else is due
    }
    // The next sample one interval on (or, past the limit, the stall report's time).
    const uint64_t after = MonotonicNs();
    uint64_t wait_ns = interval_ns;
    if (current_.samples >= arm.sample_limit && !reported) wait_ns = report_at_ns > after ? report_at_ns - after : 0;
    if (header_->capture_request.load(std::memory_order_acquire) != request) return;  // Run() takes the new one
    if (wait_ns != 0) protocol::FutexWait(&header_->capture_request, request, wait_ns);
    if (header_->capture_request.load(std::memory_order_acquire) != request) return;
  }
}

bool Watchdog::TakeSample(uint32_t request, const protocol::ArmRequest& arm, bool write_report) {
  ReportFields fields;
  fields.request = request;
  fields.callback_start_ticks = arm.start_ticks;
  fields.name_id = header_->inflight_name_id.load(std::memory_order_relaxed);
  // 1. The kernel's view, before we want the GIL (see Answer). A stall report gets the careful read.
  const ThreadState thread = ReadThreadState(loop_tid_, write_report ? kStateReads : 1, kStateReadIntervalNs, &stop_);
  if (write_report) {
    fields.captured_unix_ns = UnixNowNs();
    fields.stage = ReportStage::kThreadStateOnly;
    WriteStallReport(fields, thread, nullptr, {});
  }
  // 2. The stack under the GIL, and the names interned while we hold it.
  const char* skip = AnnounceGil();
  if (skip != nullptr) {
    fields.stage = ReportStage::kFailed;
    if (write_report) WriteStallReport(fields, thread, nullptr, skip);
    return false;
  }
  const uint64_t asked = MonotonicNs();
  const PyGILState_STATE gil = PyGILState_Ensure();
  fields.gil_wait_ns = MonotonicNs() - asked;
  SampleNames names;
  std::vector<FrameInfo> frames;
  std::string error;
  // The callback may have ended while we waited for the GIL: then its stack is gone.
  const bool running = StillRunning(arm.start_ticks);
  bool charged = running && SampleStack(python_ident_, kMaxFrames, &names, write_report ? &frames : nullptr, &error);
  if (!running && fields.gil_wait_ns >= kGilHeldNs) {
    names.site = kGilHeldSite;  // it ran native code that kept the GIL until it returned
    charged = true;
  }
  const uint64_t now = MonotonicNs();
  uint32_t slot = 0;
  const char state = thread.state.empty() ? '?' : thread.state[0];
  if (charged) {
    current_.endpoint = memo_->NameId(names_, names.endpoint);
    current_.handler = memo_->NameId(names_, names.handler);
    current_.site = memo_->NameId(names_, names.site);
    current_.wchan = thread.wchan.empty() || thread.wchan == "0" ? 0 : memo_->NameId(names_, thread.wchan);
    if (table_) {
      slot = memo_->Slot(table_, {current_.endpoint, current_.handler, current_.site, static_cast<unsigned char>(state)});
    }
  }
  fields.captured_unix_ns = UnixNowNs();
  PyGILState_Release(gil);
  wants_gil_.store(false, std::memory_order_seq_cst);
  if (charged) {
    if (table_) table_.Add(slot, now > charged_until_ns_ ? now - charged_until_ns_ : 0);
    charged_until_ns_ = now;
    if (current_.samples == 0) current_.first_sample_mono_ns = now;
    ++current_.samples;
    current_.state = state;
    protocol::WriteAttribution(*header_, current_);
  }
  if (write_report) {
    if (!running) error = "the callback returned before its stack could be taken";
    fields.stage = ReportStage::kComplete;  // or kFailed without frames (WriteStallReport decides)
    WriteStallReport(fields, thread, &frames, error);
  }
  return running;
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
  // 1. The kernel's view, before we want the GIL (a spinning thread that must hand the GIL to us
  //    would then look asleep). Published at once: the stack may take a while or never come.
  const ThreadState thread = ReadThreadState(loop_tid_, kStateReads, kStateReadIntervalNs, &stop_);
  fields.captured_unix_ns = UnixNowNs();
  fields.stage = ReportStage::kThreadStateOnly;
  WriteStallReport(fields, thread, nullptr, {});

  // 2. The Python stack, under the GIL.
  const char* skip = AnnounceGil();
  std::vector<FrameInfo> frames;
  std::string error = skip != nullptr ? skip : "";
  if (skip == nullptr) {
    const uint64_t asked = MonotonicNs();
    const PyGILState_STATE gil = PyGILState_Ensure();
    fields.gil_wait_ns = MonotonicNs() - asked;
    CapturePythonStack(python_ident_, kMaxFrames, &frames, &error);
    fields.captured_unix_ns = UnixNowNs();
    PyGILState_Release(gil);
    wants_gil_.store(false, std::memory_order_seq_cst);
  }
  fields.stage = ReportStage::kComplete;  // or kFailed without frames (WriteStallReport decides)
  WriteStallReport(fields, thread, &frames, error);
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
