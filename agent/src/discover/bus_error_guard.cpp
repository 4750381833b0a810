// The SIGBUS handler and its range table; see bus_error_guard.h.
//
// Async-signal safety: the handler touches only the fixed table of atomics (lock-free on every
// platform we build for, see the static_assert) and calls mmap(2) and sigaction(2). sigaction is
// async-signal-safe; mmap is not on POSIX's list, but on Linux it is a plain system call with no
// user-space state, which is what the handler relies on.
#include "discover/bus_error_guard.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <mutex>

namespace loopwatch::agent {
namespace {

static_assert(std::atomic<uintptr_t>::is_always_lock_free && std::atomic<bool>::is_always_lock_free,
              "the SIGBUS handler may only touch lock-free atomics");

std::array<GuardedRange, BusErrorGuard::kMaxRanges> g_ranges;
std::atomic<uint64_t> g_faults{0};
uintptr_t g_page_size = 4096;  // set before the handler is installed, constant afterwards
struct sigaction g_previous {};
std::mutex g_register_mutex;  // serializes Register/Unregister (never taken by the handler)

void OnBusError(int signal_number, siginfo_t* info, void* /*context*/) {
  const auto address = reinterpret_cast<uintptr_t>(info->si_addr);
  for (GuardedRange& range : g_ranges) {
    // Acquire pairs with Register's release store of begin: end is valid once begin is seen.
    const uintptr_t begin = range.begin.load(std::memory_order_acquire);
    if (begin == 0 || address < begin || address >= range.end.load(std::memory_order_relaxed)) continue;
    void* page = reinterpret_cast<void*>(address & ~(g_page_size - 1));
    // Replaces the page that has no file behind it any more; the mapping stays as long as it was,
    // so the owner's munmap of the whole range still works.
    if (mmap(page, g_page_size, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED) break;
    range.faulted.store(true, std::memory_order_release);
    g_faults.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // Not a guarded ring page: a real bug. Hand the fault to whoever handled it before (the default
  // action: a core dump); returning re-executes the access, which faults again there.
  sigaction(signal_number, &g_previous, nullptr);
}

}  // namespace

void BusErrorGuard::Install() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_page_size = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    struct sigaction action {};
    action.sa_sigaction = OnBusError;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    sigaction(SIGBUS, &action, &g_previous);
  });
}

GuardedRange* BusErrorGuard::Register(const void* begin, std::size_t length) {
  Install();
  std::lock_guard<std::mutex> lock(g_register_mutex);
  for (GuardedRange& range : g_ranges) {
    if (range.begin.load(std::memory_order_relaxed) != 0) continue;
    const auto first = reinterpret_cast<uintptr_t>(begin);
    range.faulted.store(false, std::memory_order_relaxed);
    range.end.store(first + length, std::memory_order_relaxed);
    range.begin.store(first, std::memory_order_release);  // publishes end and faulted to the handler
    return &range;
  }
  return nullptr;
}

void BusErrorGuard::Unregister(GuardedRange* range) {
  if (range == nullptr) return;
  std::lock_guard<std::mutex> lock(g_register_mutex);
  range->begin.store(0, std::memory_order_release);
}

uint64_t BusErrorGuard::FaultsHandled() { return g_faults.load(std::memory_order_relaxed); }

}  // namespace loopwatch::agent
