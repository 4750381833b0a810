// Test support: reads series back out of a prometheus::Registry (through Collect(), as a scrape
// would), so tests assert on the values a Prometheus server would see.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

namespace loopwatch::testing {

using LabelSubset = std::map<std::string, std::string>;

class MetricReader {
 public:
  explicit MetricReader(prometheus::Registry& registry) : families_(registry.Collect()) {}

  // Series of family `name` whose labels include every pair of `labels`.
  std::vector<prometheus::ClientMetric> Find(const std::string& name, const LabelSubset& labels = {}) const;
  std::size_t Count(const std::string& name, const LabelSubset& labels = {}) const { return Find(name, labels).size(); }
  // The value of the single matching counter or gauge (nullopt unless exactly one series matches).
  std::optional<double> Value(const std::string& name, const LabelSubset& labels = {}) const;
  // The single matching histogram (nullopt unless exactly one series matches).
  std::optional<prometheus::ClientMetric::Histogram> Histogram(const std::string& name,
                                                               const LabelSubset& labels = {}) const;
  // Cumulative count of the bucket with upper bound `le` (UINT64_MAX if there is no such bucket).
  static uint64_t CumulativeAt(const prometheus::ClientMetric::Histogram& histogram, double le);
  static std::string LabelOf(const prometheus::ClientMetric& metric, const std::string& name);

 private:
  std::vector<prometheus::MetricFamily> families_;
};

}  // namespace loopwatch::testing
