// Counts /metrics scrapes, so that a retiring ring's last samples are kept until a scrape has seen
// them. Registered with the Exposer BEFORE the registry: a scrape bumps the count before it collects
// the registry, so a count that rose after the final drain proves a scrape collected after it.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

namespace loopwatch::agent {

// Thread safe: Collect() runs on CivetWeb threads, scrapes() on the Asio thread.
class ScrapeCounter : public prometheus::Collectable {
 public:
  ScrapeCounter() = default;
  ScrapeCounter(const ScrapeCounter&) = delete;
  ScrapeCounter& operator=(const ScrapeCounter&) = delete;

  // Contributes no metrics; only counts the call.
  std::vector<prometheus::MetricFamily> Collect() const override {
    // Release pairs with the acquire in scrapes(): a bump is seen only with what preceded it.
    scrapes_.fetch_add(1, std::memory_order_acq_rel);
    return {};
  }

  uint64_t scrapes() const { return scrapes_.load(std::memory_order_acquire); }

 private:
  mutable std::atomic<uint64_t> scrapes_{0};
};

}  // namespace loopwatch::agent
