// Per-ring drain, liveness and phase bookkeeping; see tracked_ring.h.
#include "drain/tracked_ring.h"

#include <algorithm>

#include "expose/label_text.h"
#include "discover/writer_liveness.h"

namespace loopwatch::agent {

TrackedRing::TrackedRing(std::unique_ptr<RingFile> file, std::string name, RingShared& shared)
    : file_(std::move(file)),
      name_(std::move(name)),
      key_{SanitizeUtf8(file_->header().service_name()), file_->header().pid, file_->header().loop_id},
      metrics_(std::make_unique<LoopMetrics>(shared.families, file_->header(), shared.aggregation, &shared.slow_log)),
      stall_watch_(std::make_unique<StallWatch>(*file_, shared.families, metrics_->loop_labels(), shared.stalls,
                                                shared.stall_log)),
      blocked_(file_->header().attribution_capacity != 0
                   ? std::make_unique<BlockedTime>(shared.families, metrics_->loop_labels(), shared.aggregation.top_k)
                   : nullptr) {
  // Tells the shim an agent reads this ring (so it leaves the file for us to drain and remove when it
  // closes); clears a pause a previous agent left behind. The shim's own bits (kControlPausedByApp)
  // stay. Release pairs with the shim's acquire load of control.
  protocol::RingHeader& live = file_->live_header();
  live.control.fetch_and(~protocol::kControlPaused, std::memory_order_relaxed);
  live.control.fetch_or(protocol::kControlValid, std::memory_order_release);
}

TrackedRing::~TrackedRing() {
  // Pairs with the shim's acquire load of control when it closes the ring.
  file_->live_header().control.fetch_and(~(protocol::kControlValid | protocol::kControlPaused), std::memory_order_release);
}

void TrackedRing::SetPaused(bool paused) {
  std::atomic<uint32_t>& control = file_->live_header().control;
  // Relaxed: the bit orders no other data; the shim loads control before every callback, so it
  // honours the change at its next callback (cache coherence makes the store visible at once).
  if (paused) {
    control.fetch_or(protocol::kControlPaused, std::memory_order_relaxed);
  } else {
    control.fetch_and(~protocol::kControlPaused, std::memory_order_relaxed);
  }
}

bool TrackedRing::paused() const {
  return (file_->live_header().control.load(std::memory_order_relaxed) & protocol::kControlPausedMask) != 0;
}

uint64_t TrackedRing::Drain(uint64_t max_samples, Clock::time_point now) {
  if (phase_ == RingPhase::kCorrupt) return 0;
  if (file_->Truncated()) {  // before reading: pages past the new end would read as zeros
    MarkCorrupt("truncated");
    return 0;
  }
  LoopMetrics& metrics = *metrics_;
  const protocol::NameTableReader& names = file_->names();
  // Before the names: every name a published slot uses was appended before the slot (attribution.h).
  const uint32_t slots = blocked_ != nullptr ? protocol::PublishedSlots(file_->live_header(), file_->header().attribution_capacity) : 0;
  bool names_ok = PollNames();  // marks the ring corrupt when it fails
  // The in-flight callback and its attribution before its sample is drained (its /api/slow event
  // then carries the attribution).
  if (names_ok) WatchInflight(now);
  uint64_t total = 0;
  while (names_ok && total < max_samples) {
    const auto want = static_cast<uint32_t>(std::min<uint64_t>(kDrainBatch, max_samples - total));
    uint32_t got = 0;
    // A name is published before the first sample that uses it, and the reader loaded write_pos
    // (acquire) before reading the sample: an id past the names seen so far is visible on a re-poll.
    const auto status = file_->reader().Drain(
        want,
        [&](const protocol::Sample& s) {
          if (s.name_id >= names.next_id() && names_ok) names_ok = PollNames();
          metrics.Add(s);
        },
        &got);
    metrics.FlushBatch();
    total += got;
    if (status != protocol::DrainStatus::kOk) {
      MarkCorrupt("corrupt_ring");
      return total;
    }
    if (got < want) break;
  }
  // Shrunk during this drain so that a read hit a lost page: the zeros read are not samples. (A
  // shrink that no read touched is found by the next drain's Truncated().)
  if (file_->Faulted()) {
    MarkCorrupt("truncated");
    return total;
  }
  if (!names_ok) return total;  // PollNames marked it corrupt
  file_->ReleaseDrainedPages();
  // Relaxed: a statistic the writer bumps on its own; an exact moment does not matter.
  metrics.MirrorDropped(file_->live_header().dropped.load(std::memory_order_relaxed));
  metrics.MirrorBusy(file_->live_header().busy_ticks.load(std::memory_order_relaxed));  // relaxed: a statistic
  metrics.MaybeRerank(now);
  metrics.MaybeCloseRecentWindow(now);
  if (blocked_ != nullptr) {
    // A slot naming an id the table never had (a hostile writer) is labelled "other".
    blocked_->Mirror(
        file_->attribution_table(), slots, [&metrics](uint32_t id) { return metrics.TextOf(id).value_or("other"); }, now);
  }
  return total;
}

bool TrackedRing::PollNames() {
  LoopMetrics& metrics = *metrics_;
  const bool ok = file_->names().Poll([&metrics](uint32_t id, std::string_view text) { metrics.AddName(id, text); }) ==
                  protocol::NameTableStatus::kOk;
  if (!ok) MarkCorrupt("corrupt_names");
  return ok;
}

void TrackedRing::Watch(Clock::time_point now) {
  if (phase_ != RingPhase::kLive || file_->Truncated()) return;  // the drain marks a truncated ring
  if (PollNames()) WatchInflight(now);
}

void TrackedRing::WatchInflight(Clock::time_point now) {
  const LoopMetrics& metrics = *metrics_;
  stall_watch_->Check(
      now, [&metrics](uint32_t id) { return metrics.NameOf(id); }, [&metrics](uint32_t id) { return metrics.TextOf(id); });
  const AttributedCallback& attributed = stall_watch_->attribution();
  if (attributed.start_ticks != 0 &&
      (attributed.start_ticks != attribution_noted_ || attributed.samples != attribution_samples_noted_)) {
    metrics_->NoteAttribution(attributed.start_ticks, AttributionFields(attributed));
    attribution_noted_ = attributed.start_ticks;
    attribution_samples_noted_ = attributed.samples;
  }
}

bool TrackedRing::CheckWriterGone() {
  // Pairs with the writer's store of kWriterClosed: a ring closed cleanly gets no more samples.
  const bool closed = (file_->live_header().writer_flags.load(std::memory_order_acquire) & protocol::kWriterClosed) != 0;
  const WriterState state = closed ? WriterState::kGone : QueryWriter(file_->fd());
  if (state == WriterState::kUnknown) return gone_checks_ >= 2;
  writer_alive_ = state == WriterState::kAlive;
  gone_checks_ = writer_alive_ ? 0 : gone_checks_ + 1;
  return gone_checks_ >= 2;
}

void TrackedRing::MarkAwaitingScrape(uint64_t scrapes_at_final_drain, Clock::time_point deadline) {
  if (phase_ != RingPhase::kLive) return;
  phase_ = RingPhase::kAwaitingScrape;
  scrapes_at_final_drain_ = scrapes_at_final_drain;
  retire_deadline_ = deadline;
}

bool TrackedRing::ReadyToRetire(uint64_t scrapes_now, Clock::time_point now) const {
  switch (phase_) {
    case RingPhase::kLive: return false;
    case RingPhase::kAwaitingScrape: return scrapes_now > scrapes_at_final_drain_ || now >= retire_deadline_;
    case RingPhase::kCorrupt: return true;
  }
  return false;
}

void TrackedRing::MarkCorrupt(std::string_view reason) {
  phase_ = RingPhase::kCorrupt;
  corrupt_reason_ = reason;
}

RingStatus TrackedRing::Status() const {
  const protocol::HeaderSnapshot& header = file_->header();
  RingStatus status;
  status.file = name_;
  status.service = key_.service;
  status.pid = header.pid;
  status.loop = header.loop_id;
  status.kind = header.loop_kind == protocol::LoopKind::kUvloop ? "uvloop" : "asyncio";
  status.thread = header.loop_thread_id;
  status.samples = metrics_->samples();
  status.names = metrics_->names();
  // Relaxed: a statistic.
  status.dropped = file_->live_header().dropped.load(std::memory_order_relaxed);
  status.alive = writer_alive_;
  status.backlog = phase_ == RingPhase::kCorrupt ? 0 : file_->Backlog();
  status.paused = paused();
  status.inflight_seconds = stall_watch_->inflight_seconds();
  status.inflight_callback = stall_watch_->inflight_callback();
  if (const AttributedCallback* names = stall_watch_->inflight_attribution()) {
    status.inflight_endpoint = names->endpoint;
    status.inflight_handler = names->handler;
    status.inflight_site = names->site;
  }
  status.recent = metrics_->recent();
  status.stalls = stall_watch_->stalls();
  return status;
}

}  // namespace loopwatch::agent
