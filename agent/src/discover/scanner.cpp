// Discovery, liveness and retirement of rings; see scanner.h.
#include "discover/scanner.h"

#include <cstring>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "expose/label_text.h"
#include "discover/ring_file.h"

namespace loopwatch::agent {

void Scanner::Scan(Clock::time_point now) {
  MapNewFiles(now);
  CheckWriters(now);
  rings_.Sweep(scrapes_.scrapes(), now);
}

void Scanner::MapNewFiles(Clock::time_point now) {
  std::vector<RingCandidate> candidates;
  int error = 0;
  if (!directory_.List(&candidates, &error)) {
    if (!directory_unreadable_) spdlog::error("cannot read ring directory {}: {}", directory_.path(), std::strerror(error));
    directory_unreadable_ = true;
    return;
  }
  directory_unreadable_ = false;
  std::set<std::pair<uint64_t, uint64_t>> duplicates;
  for (const RingCandidate& candidate : candidates) {
    if (rings_.Contains(candidate.identity)) continue;
    if (!candidate.regular_file) {
      refusals_.Refuse(candidate.name, candidate.path, candidate.identity, "not_regular_file");
      continue;
    }
    RingOpenResult opened = RingFile::Open(candidate.path, owners_);
    if (opened.vanished) continue;  // removed (or renamed) since the listing
    const FileIdentity& identity = opened.have_identity ? opened.identity : candidate.identity;
    if (!opened.ring) {
      // A writer creates, sizes, fills and only then publishes its file: give it time.
      const bool being_created = opened.header_error == protocol::HeaderError::kNotReady ||
                                 opened.header_error == protocol::HeaderError::kTooSmall;
      if (being_created && !directory_.CreationGraceOver(candidate.name, identity, now)) continue;
      refusals_.Refuse(candidate.name, candidate.path, identity, opened.reason, false,
                       opened.error_number != 0 ? std::strerror(opened.error_number) : "");
      continue;
    }
    directory_.ForgetPending(candidate.name);
    if (rings_.Contains(opened.ring->identity())) continue;  // a mapped ring renamed under a new name
    const auto inode = std::make_pair(identity.device, identity.inode);
    if (rings_.Add(std::move(opened.ring), candidate.name) == RingSet::AddResult::kDuplicateLoop) {
      if (duplicates_warned_.count(inode) == 0) {
        spdlog::warn("ring file {} has the service, pid and loop of a mapped ring; waiting for that one to retire",
                     ForLog(candidate.path));
      }
      duplicates.insert(inode);
    }
  }
  duplicates_warned_ = std::move(duplicates);
}

void Scanner::CheckWriters(Clock::time_point now) {
  for (const auto& ring : rings_.rings()) {
    if (ring->phase() != RingPhase::kLive || !ring->CheckWriterGone()) continue;
    // The writer is gone: nothing more will arrive, so this drain empties the ring.
    const uint64_t last = ring->Drain(uint64_t{4} * ring->file().header().ring_capacity, now);
    metrics_.CountDrained(last);
    if (ring->phase() != RingPhase::kLive) continue;  // corrupt: retired by the sweep
    ring->MarkAwaitingScrape(scrapes_.scrapes(), now + kRetireDeadline);
    spdlog::info("writer of ring {} is gone: final drain read {} samples; retiring after the next scrape",
                 ForLog(ring->file().path()), last);
  }
}

}  // namespace loopwatch::agent
