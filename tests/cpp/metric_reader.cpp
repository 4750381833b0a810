// Test support implementation; see metric_reader.h.
#include "metric_reader.h"

#include <cmath>

namespace loopwatch::testing {

std::vector<prometheus::ClientMetric> MetricReader::Find(const std::string& name, const LabelSubset& labels) const {
  std::vector<prometheus::ClientMetric> out;
  for (const auto& family : families_) {
    if (family.name != name) continue;
    for (const auto& metric : family.metric) {
      std::size_t matched = 0;
      for (const auto& label : metric.label) {
        auto it = labels.find(label.name);
        if (it != labels.end() && it->second == label.value) ++matched;
      }
      if (matched == labels.size()) out.push_back(metric);
    }
  }
  return out;
}

std::optional<double> MetricReader::Value(const std::string& name, const LabelSubset& labels) const {
  for (const auto& family : families_) {
    if (family.name != name) continue;
    const auto found = Find(name, labels);
    if (found.size() != 1) return std::nullopt;
    return family.type == prometheus::MetricType::Gauge ? found[0].gauge.value : found[0].counter.value;
  }
  return std::nullopt;
}

std::optional<prometheus::ClientMetric::Histogram> MetricReader::Histogram(const std::string& name,
                                                                           const LabelSubset& labels) const {
  const auto found = Find(name, labels);
  if (found.size() != 1) return std::nullopt;
  return found[0].histogram;
}

uint64_t MetricReader::CumulativeAt(const prometheus::ClientMetric::Histogram& histogram, double le) {
  for (const auto& bucket : histogram.bucket) {
    if (bucket.upper_bound == le || (std::isinf(le) && std::isinf(bucket.upper_bound))) return bucket.cumulative_count;
  }
  return UINT64_MAX;
}

std::string MetricReader::LabelOf(const prometheus::ClientMetric& metric, const std::string& name) {
  for (const auto& label : metric.label) {
    if (label.name == name) return label.value;
  }
  return {};
}

}  // namespace loopwatch::testing
