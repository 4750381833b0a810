// See text_exposition.h.
#include "text_exposition.h"

#include <charconv>
#include <cmath>
#include <string_view>

namespace loopwatch::agent {
namespace {

void AppendNumber(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
  } else if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
  } else {
    char buffer[32];
    const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);  // shortest round-trip form
    out.append(buffer, result.ptr);
  }
}

void AppendNumber(std::string& out, uint64_t value) {
  char buffer[24];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  out.append(buffer, result.ptr);
}

// Label values escape \, " and newline; HELP text escapes \ and newline (text format 0.0.4).
void AppendEscaped(std::string& out, std::string_view text, bool quotes) {
  for (const char c : text) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (quotes && c == '"') out += "\\\"";
    else out += c;
  }
}

void AppendLabels(std::string& out, const std::vector<prometheus::ClientMetric::Label>& labels,
                  std::string_view extra_name = {}, double extra_value = 0) {
  if (labels.empty() && extra_name.empty()) return;
  out += '{';
  bool first = true;
  for (const auto& label : labels) {
    if (!first) out += ',';
    first = false;
    out += label.name;
    out += "=\"";
    AppendEscaped(out, label.value, /*quotes=*/true);
    out += '"';
  }
  if (!extra_name.empty()) {
    if (!first) out += ',';
    out += extra_name;
    out += "=\"";
    AppendNumber(out, extra_value);
    out += '"';
  }
  out += '}';
}

template <typename Number>
void AppendSample(std::string& out, std::string_view name, std::string_view suffix, const prometheus::ClientMetric& metric,
                  Number value, std::string_view extra_name = {}, double extra_value = 0) {
  out += name;
  out += suffix;
  AppendLabels(out, metric.label, extra_name, extra_value);
  out += ' ';
  AppendNumber(out, value);
  if (metric.timestamp_ms != 0) {
    out += ' ';
    AppendNumber(out, static_cast<uint64_t>(metric.timestamp_ms));
  }
  out += '\n';
}

std::string_view TypeName(prometheus::MetricType type) {
  switch (type) {
    case prometheus::MetricType::Counter: return "counter";
    case prometheus::MetricType::Gauge: return "gauge";
    case prometheus::MetricType::Histogram: return "histogram";
    case prometheus::MetricType::Summary: return "summary";
    case prometheus::MetricType::Untyped: return "untyped";
  }
  return "untyped";
}

}  // namespace

void AppendTextExposition(const std::vector<prometheus::MetricFamily>& families, std::string& out) {
  for (const prometheus::MetricFamily& family : families) {
    if (family.metric.empty()) continue;
    out += "# HELP ";
    out += family.name;
    out += ' ';
    AppendEscaped(out, family.help, /*quotes=*/false);
    out += "\n# TYPE ";
    out += family.name;
    out += ' ';
    out += TypeName(family.type);
    out += '\n';
    for (const prometheus::ClientMetric& metric : family.metric) {
      switch (family.type) {
        case prometheus::MetricType::Counter:
          AppendSample(out, family.name, "", metric, metric.counter.value);
          break;
        case prometheus::MetricType::Gauge:
          AppendSample(out, family.name, "", metric, metric.gauge.value);
          break;
        case prometheus::MetricType::Untyped:
          AppendSample(out, family.name, "", metric, metric.untyped.value);
          break;
        case prometheus::MetricType::Summary:
          AppendSample(out, family.name, "_count", metric, metric.summary.sample_count);
          AppendSample(out, family.name, "_sum", metric, metric.summary.sample_sum);
          for (const auto& quantile : metric.summary.quantile) {
            AppendSample(out, family.name, "", metric, quantile.value, "quantile", quantile.quantile);
          }
          break;
        case prometheus::MetricType::Histogram:
          AppendSample(out, family.name, "_count", metric, metric.histogram.sample_count);
          AppendSample(out, family.name, "_sum", metric, metric.histogram.sample_sum);
          for (const auto& bucket : metric.histogram.bucket) {
            AppendSample(out, family.name, "_bucket", metric, bucket.cumulative_count, "le", bucket.upper_bound);
          }
          break;
      }
    }
  }
}

}  // namespace loopwatch::agent
