// The metric families of the per-loop series, registered once in the agent's registry. Each mapped
// ring adds its own series to them (LoopMetrics) and removes them again when the ring is retired.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace loopwatch::agent {

// Family::Add and Family::Remove are thread safe (prometheus-cpp locks each family), so rings may
// add and remove series while a scrape collects them.
struct LoopFamilies {
  explicit LoopFamilies(prometheus::Registry& registry);
  LoopFamilies(const LoopFamilies&) = delete;
  LoopFamilies& operator=(const LoopFamilies&) = delete;

  // Labels service, pid, loop.
  prometheus::Family<prometheus::Histogram>& callback_duration;
  prometheus::Family<prometheus::Histogram>& loop_lag;
  prometheus::Family<prometheus::Histogram>& loop_handles;
  prometheus::Family<prometheus::Counter>& callbacks;
  prometheus::Family<prometheus::Counter>& slow_callbacks;
  prometheus::Family<prometheus::Counter>& dropped_samples;
  prometheus::Family<prometheus::Counter>& busy_seconds;
  prometheus::Family<prometheus::Counter>& callback_name_evictions;
  prometheus::Family<prometheus::Counter>& stalls;
  prometheus::Family<prometheus::Counter>& watchdog_wakeups;
  prometheus::Family<prometheus::Counter>& blocked_evictions;
  // Labels service, pid, loop, callback (the running callback's name once it is slow, else empty),
  // endpoint, handler, site (what its samples say, once the first is in; else empty).
  prometheus::Family<prometheus::Gauge>& inflight_seconds;
  // Labels service, pid, loop, endpoint, handler, site, state (blocked_time.h).
  prometheus::Family<prometheus::Counter>& blocked_seconds;
  // No labels: the agent-wide delay from the arm threshold to a callback's first sample.
  prometheus::Family<prometheus::Histogram>& sampling_delay_family;
  prometheus::Histogram& sampling_delay;
  // Labels service, pid, loop, kind, thread.
  prometheus::Family<prometheus::Gauge>& loop_info;
  // Labels service, pid, loop, callback.
  prometheus::Family<prometheus::Histogram>& named_callback_duration;
};

}  // namespace loopwatch::agent
