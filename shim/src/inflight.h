// The two per-callback touches of stall forensics (protocol v1.2, stall_report.h), kept in one place
// so every hook (asyncio Handle._run, the uvloop trampoline, protocol wrappers) does exactly the same:
//
//   NeedsAttention(header)     one relaxed load of the control word: a pause bit (the hook then
//                              records nothing for the callback: no sample, no in-flight) or the
//                              shim's own one-off work (LoopState::RecordingRing handles both).
//   BeginInflight / EndInflight  the in-flight slot: name (relaxed) then start (release) before the
//                              call, start = 0 (release) after it. The agent reads it with ReadInflight.
//
// All of it runs on the loop thread, the only writer of the in-flight line; the control line is
// written by the agent (and by pause()/resume() with fetch_or/fetch_and, under the GIL).
#pragma once

#include <atomic>
#include <cstdint>

#include "loopwatch/layout.h"

namespace loopwatch::shim {

// Loop thread, once per callback. Relaxed: nothing is published through the control word; a change
// takes effect from the next callback that loads it.
inline bool NeedsAttention(const protocol::RingHeader* header) {
  return (header->control.load(std::memory_order_relaxed) & protocol::kControlAttentionMask) != 0;
}

inline bool Paused(const protocol::RingHeader* header) {
  return (header->control.load(std::memory_order_relaxed) & protocol::kControlPausedMask) != 0;
}

// Loop thread, right before the call. Returns the header whose slot this callback owns, or nullptr
// when the slot was already taken: a callback of the same ring nested inside another (a Handle._run
// called by hand from a callback). The outermost callback keeps the slot, since it is the one the
// loop is stuck in; clearing the slot when the inner one returns would hide that.
inline protocol::RingHeader* BeginInflight(protocol::RingHeader* header, uint32_t name_id, uint64_t start_ticks) {
  // Relaxed: only this thread stores the slot, so this reads our own last store.
  if (header->inflight_start_ticks.load(std::memory_order_relaxed) != 0) [[unlikely]] return nullptr;
  header->inflight_name_id.store(name_id, std::memory_order_relaxed);
  // Pairs with the agent's acquire load of the start in ReadInflight: the name above is visible first.
  header->inflight_start_ticks.store(start_ticks, std::memory_order_release);
  return header;
}

// Loop thread, right after the call, with the header BeginInflight returned (skipped when null) and
// only if that header still belongs to the loop's live ring (the callback may have closed it).
inline void EndInflight(protocol::RingHeader* header) {
  // Pairs with the agent's acquire loads in ReadInflight: 0 = idle.
  header->inflight_start_ticks.store(0, std::memory_order_release);
}

// A nested protocol callback renames the enclosing sample: the slot follows (same start, new name).
inline void RenameInflight(protocol::RingHeader* header, uint32_t name_id) {
  // Relaxed: the agent's start/name/start read accepts either name for this start; both are right.
  header->inflight_name_id.store(name_id, std::memory_order_relaxed);
}

}  // namespace loopwatch::shim
