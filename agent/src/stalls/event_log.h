// A bounded log of events the agent saw (stall reports for /api/stalls, slow callbacks for
// /api/slow): the newest `capacity` entries as JSON objects, the oldest dropped first and counted.
// The Asio thread adds; CivetWeb threads render. Entries are built from untrusted ring contents, so
// every string in them must already be valid UTF-8 (SanitizeUtf8) before it gets here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

namespace loopwatch::agent {

// Thread safe.
class EventLog {
 public:
  explicit EventLog(std::size_t capacity) : capacity_(capacity) {}
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  void Add(nlohmann::json event);
  // Replaces the newest entry whose `key` field equals `value` (e.g. a stall whose stack arrived
  // later); returns false if there is none.
  bool Update(const std::string& key, uint64_t value, nlohmann::json event);
  // {"capacity": N, "dropped": D, "events": [newest first]}.
  std::string RenderJson() const;
  std::size_t size() const;

 private:
  const std::size_t capacity_;
  mutable std::mutex mutex_;
  std::deque<nlohmann::json> events_;  // guarded by mutex_; back = newest
  uint64_t dropped_ = 0;               // guarded by mutex_
};

}  // namespace loopwatch::agent
