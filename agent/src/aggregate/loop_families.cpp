// Registers the per-loop metric families (names, help texts); see loop_families.h.
#include "aggregate/loop_families.h"

namespace loopwatch::agent {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

LoopFamilies::LoopFamilies(prometheus::Registry& registry)
    : callback_duration(BuildHistogram()
                            .Name("loopwatch_callback_duration_seconds")
                            .Help("Wall time of each event loop callback.")
                            .Register(registry)),
      loop_lag(BuildHistogram()
                   .Name("loopwatch_loop_lag_seconds")
                   .Help("Delay between when a callback was due (timer) or enqueued (ready) and when it started.")
                   .Register(registry)),
      loop_handles(BuildHistogram()
                       .Name("loopwatch_loop_handles")
                       .Help("Handles the loop held (ready plus scheduled) when a callback started.")
                       .Register(registry)),
      callbacks(BuildCounter()
                    .Name("loopwatch_callbacks_total")
                    .Help("Event loop callbacks run.")
                    .Register(registry)),
      slow_callbacks(BuildCounter()
                         .Name("loopwatch_slow_callbacks_total")
                         .Help("Callbacks that ran at least the slow threshold (--slow.threshold).")
                         .Register(registry)),
      dropped_samples(BuildCounter()
                          .Name("loopwatch_dropped_samples_total")
                          .Help("Samples the shim dropped because the ring was full.")
                          .Register(registry)),
      busy_seconds(BuildCounter()
                       .Name("loopwatch_loop_busy_seconds_total")
                       .Help("Time the loop spent outside its poll: callbacks plus what no callback accounts for.")
                       .Register(registry)),
      callback_name_evictions(BuildCounter()
                                  .Name("loopwatch_callback_name_evictions_total")
                                  .Help("Callback names that lost their top-K series to a name with more total time.")
                                  .Register(registry)),
      stalls(BuildCounter()
                 .Name("loopwatch_stalls_total")
                 .Help("Callbacks seen still running after the stall threshold (--stall.threshold); each asks for a stack.")
                 .Register(registry)),
      watchdog_wakeups(BuildCounter()
                           .Name("loopwatch_watchdog_wakeups_total")
                           .Help("Times the shim's watchdog thread woke up: once per slow callback it samples, once per stall capture.")
                           .Register(registry)),
      blocked_evictions(BuildCounter()
                            .Name("loopwatch_blocked_evictions_total")
                            .Help("(endpoint, handler, site, state) keys that lost their top-K series to a key with more blocked time.")
                            .Register(registry)),
      inflight_seconds(BuildGauge()
                           .Name("loopwatch_callback_inflight_seconds")
                           .Help("Age of the callback running now (0 when idle); callback names it once it is slow, endpoint, handler and site once it was sampled.")
                           .Register(registry)),
      blocked_seconds(BuildCounter()
                          .Name("loopwatch_blocked_seconds_total")
                          .Help("Wall time of slow callbacks by where their stack samples were: endpoint (route template), handler, site (the innermost line of the user's code) and thread state; the loop's top-K keys, the rest as \"other\".")
                          .Register(registry)),
      sampling_delay_family(BuildHistogram()
                                .Name("loopwatch_sampling_delay_seconds")
                                .Help("Delay from the arm threshold (--slow.arm-threshold) to the first stack sample of a slow callback.")
                                .Register(registry)),
      sampling_delay(sampling_delay_family.Add(
          {}, prometheus::Histogram::BucketBoundaries{0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1})),
      loop_info(BuildGauge()
                    .Name("loopwatch_loop_info")
                    .Help("Constant 1 per monitored loop; labels say the loop implementation and thread.")
                    .Register(registry)),
      named_callback_duration(BuildHistogram()
                                  .Name("loopwatch_named_callback_duration_seconds")
                                  .Help("Wall time of callbacks by name: the loop's top-K names by total time, the rest as \"other\".")
                                  .Register(registry)) {}

}  // namespace loopwatch::agent
