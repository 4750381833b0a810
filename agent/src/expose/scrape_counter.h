// Counts /metrics scrapes, so that a retiring ring's last samples are kept until a scrape has seen
// them. The /metrics handler (Agent::AppendMetricsText) counts a scrape BEFORE it collects the
// registry, so a count that rose after a ring's final drain proves a scrape collected after it.
#pragma once

#include <atomic>
#include <cstdint>

namespace loopwatch::agent {

// Thread safe: Count() runs on CivetWeb threads, scrapes() on the Asio thread.
class ScrapeCounter {
 public:
  ScrapeCounter() = default;
  ScrapeCounter(const ScrapeCounter&) = delete;
  ScrapeCounter& operator=(const ScrapeCounter&) = delete;

  // Release pairs with the acquire in scrapes(): a count is seen only with what preceded it.
  void Count() { scrapes_.fetch_add(1, std::memory_order_acq_rel); }
  uint64_t scrapes() const { return scrapes_.load(std::memory_order_acquire); }

 private:
  std::atomic<uint64_t> scrapes_{0};
};

}  // namespace loopwatch::agent
