// A mapped ring and everything the agent keeps about it: its metrics, whether its writer is alive,
// and where it is in its life (live -> final drain done, waiting for a scrape -> retired; or corrupt
// -> retired at once). The drain of one ring (names first, then bounded sample batches) lives here.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "expose/agent_status.h"
#include "stalls/event_log.h"
#include "aggregate/loop_families.h"
#include "aggregate/blocked_time.h"
#include "aggregate/loop_metrics.h"
#include "discover/ring_file.h"
#include "stalls/stall_watch.h"

namespace loopwatch::agent {

// The labels that must be unique among mapped rings: prometheus-cpp would merge two rings with the
// same (service, pid, loop) into one series object.
struct LoopKey {
  std::string service;
  int32_t pid = 0;
  uint32_t loop = 0;
  auto operator<=>(const LoopKey&) const = default;
};

// What every ring shares: the metric families, the options, and the agent's event logs.
struct RingShared {
  LoopFamilies& families;
  AggregationOptions aggregation;
  StallOptions stalls;
  EventLog& stall_log;  // /api/stalls
  EventLog& slow_log;   // /api/slow
};

enum class RingPhase : uint8_t {
  kLive = 1,        // drained every cycle
  kAwaitingScrape,  // the writer is gone and the final drain is done: keep series until scraped
  kCorrupt,         // the ring or its name table broke the protocol: retire now
};

// Not thread safe: owned by the RingSet and used on the agent's Asio thread only.
class TrackedRing {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr uint32_t kDrainBatch = 8192;  // samples per RingReader::Drain call

  TrackedRing(std::unique_ptr<RingFile> file, std::string name, RingShared& shared);
  // Clears the agent's control bits: with no agent attached, a shim that closes its ring removes the
  // file, and a pause the agent asked for ends with the agent.
  ~TrackedRing();
  TrackedRing(const TrackedRing&) = delete;
  TrackedRing& operator=(const TrackedRing&) = delete;

  // Reads new names, then up to `max_samples` samples in batches, then mirrors the drop counter,
  // re-ranks the callback top-K (at most once a second) and checks the in-flight callback. Returns the samples drained. On a protocol
  // violation, or a file truncated under the mapping, the phase becomes kCorrupt and nothing more is
  // read.
  uint64_t Drain(uint64_t max_samples, Clock::time_point now);
  // Every --slow.watch-interval (and at the start of each drain): new names, then the in-flight
  // callback (arming, stalls, the in-flight gauge; stall_watch.h).
  void Watch(Clock::time_point now);

  // Asks whether the writer is alive (its lock, or its "closed" flag). Returns true once the writer
  // has been seen gone on two consecutive checks (one probe could race a writer still setting up).
  bool CheckWriterGone();

  // Sets or clears kControlPaused (the agent's runtime off switch for this loop's shim).
  void SetPaused(bool paused);
  bool paused() const;

  void MarkAwaitingScrape(uint64_t scrapes_at_final_drain, Clock::time_point deadline);
  // True when a scrape was served after the final drain, or the deadline passed.
  bool ReadyToRetire(uint64_t scrapes_now, Clock::time_point now) const;

  RingPhase phase() const { return phase_; }
  std::string_view corrupt_reason() const { return corrupt_reason_; }
  bool writer_alive() const { return writer_alive_; }
  const std::string& name() const { return name_; }
  const LoopKey& key() const { return key_; }
  RingFile& file() { return *file_; }
  const RingFile& file() const { return *file_; }
  const LoopMetrics& metrics() const { return *metrics_; }
  const StallWatch& stall_watch() const { return *stall_watch_; }
  const BlockedTime* blocked() const { return blocked_.get(); }
  RingStatus Status() const;

 private:
  void MarkCorrupt(std::string_view reason);
  bool PollNames();  // false (and kCorrupt) on a protocol violation
  void WatchInflight(Clock::time_point now);  // after the names were read

  const std::unique_ptr<RingFile> file_;
  const std::string name_;
  const LoopKey key_;
  const std::unique_ptr<LoopMetrics> metrics_;  // destroyed first: series go before the mapping
  const std::unique_ptr<StallWatch> stall_watch_;
  const std::unique_ptr<BlockedTime> blocked_;  // v1.3 rings with an attribution table; else null
  uint64_t attribution_noted_ = 0;  // start ticks of the attribution last handed to metrics_
  uint32_t attribution_samples_noted_ = 0;
  RingPhase phase_ = RingPhase::kLive;
  std::string_view corrupt_reason_;
  bool writer_alive_ = true;
  int gone_checks_ = 0;
  uint64_t scrapes_at_final_drain_ = 0;
  Clock::time_point retire_deadline_{};
};

}  // namespace loopwatch::agent
