// The bounded event log; see event_log.h.
#include "stalls/event_log.h"

#include <utility>

namespace loopwatch::agent {

void EventLog::Add(nlohmann::json event) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (capacity_ == 0) {
    ++dropped_;
    return;
  }
  if (events_.size() == capacity_) {
    events_.pop_front();
    ++dropped_;
  }
  events_.push_back(std::move(event));
}

bool EventLog::Update(const std::string& key, uint64_t value, nlohmann::json event) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = events_.rbegin(); it != events_.rend(); ++it) {
    const auto field = it->find(key);
    if (field != it->end() && field->is_number_unsigned() && field->get<uint64_t>() == value) {
      *it = std::move(event);
      return true;
    }
  }
  return false;
}

std::string EventLog::RenderJson() const {
  nlohmann::json out = nlohmann::json::object();
  nlohmann::json events = nlohmann::json::array();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = events_.rbegin(); it != events_.rend(); ++it) events.push_back(*it);
    out["capacity"] = capacity_;
    out["dropped"] = dropped_;
  }
  out["events"] = std::move(events);
  // replace: a string that is not UTF-8 after all becomes U+FFFD instead of an exception mid-reply.
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::size_t EventLog::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return events_.size();
}

}  // namespace loopwatch::agent
