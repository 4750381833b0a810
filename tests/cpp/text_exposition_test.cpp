// The /metrics writer (agent/src/text_exposition.h): exact text for counters, gauges and histograms,
// label escaping, and the same samples as prometheus-cpp's own TextSerializer.
#include "expose/text_exposition.h"

#include <gtest/gtest.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

namespace loopwatch::agent {
namespace {

std::string Expose(prometheus::Registry& registry) {
  std::string out;
  AppendTextExposition(registry.Collect(), out);
  return out;
}

TEST(TextExpositionTest, WritesCountersGaugesAndHistogramsExactly) {
  prometheus::Registry registry;
  prometheus::BuildCounter().Name("lw_calls_total").Help("Calls.").Register(registry).Add({{"pid", "7"}}).Increment(3);
  prometheus::BuildGauge().Name("lw_rings").Help("Rings\nmapped \\ now.").Register(registry).Add({}).Set(2.5);
  auto& histogram = prometheus::BuildHistogram().Name("lw_wall_seconds").Help("Wall.").Register(registry).Add(
      {{"loop", "1"}}, prometheus::Histogram::BucketBoundaries{1e-5, 0.25});
  histogram.Observe(0.1);
  histogram.Observe(2);
  EXPECT_EQ(Expose(registry),
            "# HELP lw_calls_total Calls.\n"
            "# TYPE lw_calls_total counter\n"
            "lw_calls_total{pid=\"7\"} 3\n"
            "# HELP lw_rings Rings\\nmapped \\\\ now.\n"
            "# TYPE lw_rings gauge\n"
            "lw_rings 2.5\n"
            "# HELP lw_wall_seconds Wall.\n"
            "# TYPE lw_wall_seconds histogram\n"
            "lw_wall_seconds_count{loop=\"1\"} 2\n"
            "lw_wall_seconds_sum{loop=\"1\"} 2.1\n"
            "lw_wall_seconds_bucket{loop=\"1\",le=\"1e-05\"} 0\n"
            "lw_wall_seconds_bucket{loop=\"1\",le=\"0.25\"} 1\n"
            "lw_wall_seconds_bucket{loop=\"1\",le=\"+Inf\"} 2\n");
}

TEST(TextExpositionTest, EscapesQuotesBackslashesAndNewlinesInLabelValues) {
  prometheus::Registry registry;
  prometheus::BuildCounter().Name("lw_named_total").Help("h").Register(registry).Add({{"callback", "a\"b\\c\nd"}}).Increment();
  EXPECT_NE(Expose(registry).find("lw_named_total{callback=\"a\\\"b\\\\c\\nd\"} 1\n"), std::string::npos);
}

// Every sample line prometheus-cpp writes, ours writes too (order and number spelling aside).
std::vector<std::string> SampleKeys(const std::string& text) {
  std::vector<std::string> keys;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    keys.push_back(line.substr(0, space) + " " + std::to_string(std::stod(line.substr(space + 1))));
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

TEST(TextExpositionTest, HasTheSameSamplesAsPrometheusCppsSerializer) {
  prometheus::Registry registry;
  auto& family = prometheus::BuildHistogram().Name("lw_lag_seconds").Help("Lag.").Register(registry);
  for (int loop = 1; loop <= 3; ++loop) {
    auto& h = family.Add({{"loop", std::to_string(loop)}, {"service", "api"}},
                         prometheus::Histogram::BucketBoundaries{1e-3, 1e-2, 0.1, 1});
    for (int i = 0; i < 10 * loop; ++i) h.Observe(0.0007 * i * loop);
  }
  const std::string reference = prometheus::TextSerializer().Serialize(registry.Collect());
  EXPECT_EQ(SampleKeys(Expose(registry)), SampleKeys(reference));
  EXPECT_EQ(SampleKeys(Expose(registry)).size(), 3u * (2 + 5));
}

}  // namespace
}  // namespace loopwatch::agent
