// See text_exposition.h.
#include "expose/text_exposition.h"

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

// `{a="1",b="2"` (no closing brace; empty if there are no labels): written once per series and
// reused for each of its lines (a histogram has one per bucket).
void LabelText(std::string& text, const std::vector<prometheus::ClientMetric::Label>& labels) {
  text.clear();
  for (const auto& label : labels) {
    text += text.empty() ? '{' : ',';
    text += label.name;
    text += "=\"";
    AppendEscaped(text, label.value, /*quotes=*/true);
    text += '"';
  }
}

class SeriesWriter {
 public:
  SeriesWriter(std::string& out, std::string_view name, const prometheus::ClientMetric& metric, std::string& labels)
      : out_(out), name_(name), metric_(metric), labels_(labels) {
    LabelText(labels_, metric.label);
  }

  template <typename Number>
  void Line(std::string_view suffix, Number value, std::string_view extra_name = {}, double extra_value = 0) {
    out_ += name_;
    out_ += suffix;
    if (!extra_name.empty()) {
      out_ += labels_.empty() ? "{" : labels_;
      if (!labels_.empty()) out_ += ',';
      out_ += extra_name;
      out_ += "=\"";
      AppendNumber(out_, extra_value);
      out_ += "\"}";
    } else if (!labels_.empty()) {
      out_ += labels_;
      out_ += '}';
    }
    out_ += ' ';
    AppendNumber(out_, value);
    if (metric_.timestamp_ms != 0) {
      out_ += ' ';
      AppendNumber(out_, static_cast<uint64_t>(metric_.timestamp_ms));
    }
    out_ += '\n';
  }

 private:
  std::string& out_;
  std::string_view name_;
  const prometheus::ClientMetric& metric_;
  std::string& labels_;
};

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
  std::string labels;
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
      SeriesWriter series(out, family.name, metric, labels);
      switch (family.type) {
        case prometheus::MetricType::Counter:
          series.Line("", metric.counter.value);
          break;
        case prometheus::MetricType::Gauge:
          series.Line("", metric.gauge.value);
          break;
        case prometheus::MetricType::Untyped:
          series.Line("", metric.untyped.value);
          break;
        case prometheus::MetricType::Summary:
          series.Line("_count", metric.summary.sample_count);
          series.Line("_sum", metric.summary.sample_sum);
          for (const auto& quantile : metric.summary.quantile) series.Line("", quantile.value, "quantile", quantile.quantile);
          break;
        case prometheus::MetricType::Histogram:
          series.Line("_count", metric.histogram.sample_count);
          series.Line("_sum", metric.histogram.sample_sum);
          for (const auto& bucket : metric.histogram.bucket) {
            series.Line("_bucket", bucket.cumulative_count, "le", bucket.upper_bound);
          }
          break;
      }
    }
  }
}

}  // namespace loopwatch::agent
