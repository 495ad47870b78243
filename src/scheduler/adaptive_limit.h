#ifndef SHUTTER_SCHEDULER_ADAPTIVE_LIMIT_H_
#define SHUTTER_SCHEDULER_ADAPTIVE_LIMIT_H_

#include <string>

#include "absl/time/time.h"

namespace shutter::scheduler {

// What one node reported about one interval (a heartbeat's worth). A
// negative value means "not measured" (no such device, no writes).
struct LoadSample {
  // Fraction of CPU time busy, 0..1.
  double cpu_busy = -1;
  // Fraction of the interval the data device had I/O in flight, 0..1.
  double disk_busy = -1;
  // p99 latency of the partitions' own (foreground) writes, microseconds.
  double write_p99_micros = -1;
  // Fraction of the interval the store engine stalled writes (RocksDB
  // write stalls), 0..1.
  double write_stall_fraction = -1;
  // Whether snapshot work (checkpoints, restores) ran on the node during
  // the interval. Intervals without it teach the limiter the node's idle
  // foreground latency.
  bool snapshot_work = false;
  // Tasks the controller had on the node at the end of the interval
  // (running and waiting for a slot).
  int in_flight = 0;
  int queued = 0;
};

// The rule that turns a node's load into its concurrency limit, one
// decision per LoadSample. Documented in docs/adaptive.md; in short:
//
//  * Signals. Foreground write p99 is compared with the node's idle p99
//    (an average over intervals without snapshot work): its *ratio* is the
//    latency signal. Disk and CPU busy fractions are compared with fixed
//    targets. Each signal is smoothed (EWMA, `smoothing`) before use, so
//    one noisy interval does not move the limit.
//  * Pressure = the largest of p99 / (tolerance x idle p99), disk busy /
//    disk target, CPU busy / CPU target, stalled fraction / stall target
//    (over the signals measured and enabled). Above 1 the node is overloaded;
//    below `healthy_below` it is healthy; in between (the hysteresis band) the
//    limit holds.
//  * Decrease (gradient): overloaded for `decrease_after` intervals in a
//    row -> limit / pressure rounded up, but at least one less and at most
//    down to limit x `backoff`; pressure above `severe` -> halved at once.
//    Not below `min_limit`. Then `cooldown`
//    intervals with no further decrease (the in-flight tasks have to
//    drain before a smaller limit shows), unless severe.
//  * Increase (additive): healthy for `grow_after` intervals in a row
//    while the limit is in use (tasks queued, or in flight at the limit)
//    -> limit + 1, not above the capacity. Growing back to a limit that
//    was overloaded before (the "ceiling") takes `probe_after` healthy
//    intervals instead: this is what keeps the limit from sawing between
//    a good value and the next one up. A probe that is overloaded again
//    doubles that wait (up to `max_probe_after`); one that stays healthy
//    for `grow_after` intervals resets it and forgets the ceiling.
//  * An unused limit does not grow, and a node overloaded while no
//    snapshot work runs on it is not backed off (its own traffic is the
//    cause): an idle node keeps what it learned for the next snapshot.
//
// Not thread-safe (one per node, updated under the caller's lock).
class AdaptiveLimit {
 public:
  struct Options {
    // Upper bound (the node's checkpoint capacity); also the start value.
    int capacity = 1;
    int min_limit = 1;
    // Overloaded when smoothed p99 > latency_tolerance x idle p99 and also
    // more than latency_floor above it (sub-millisecond jitter is not
    // pressure). <= 0 disables the signal.
    double latency_tolerance = 1.2;
    absl::Duration latency_floor = absl::Microseconds(500);
    // Targets for busy fractions; <= 0 disables the signal.
    double disk_busy_target = 0.95;
    double cpu_busy_target = 0;
    // Write stalls: overloaded above this fraction of the interval stalled
    // (<= 0 disables). Stalls are what flushes falling behind look like to
    // writers, so the default is low.
    double write_stall_target = 0.02;
    double healthy_below = 0.85;
    double severe = 2.0;
    double backoff = 0.7;
    int decrease_after = 2;
    int cooldown = 2;
    int grow_after = 3;
    int probe_after = 6;
    int max_probe_after = 96;
    // EWMA weights: of the newest sample for the signals, of the newest
    // idle sample for the idle p99 baseline.
    double smoothing = 0.5;
    double baseline_smoothing = 0.2;
  };

  struct Decision {
    int limit = 0;
    bool changed = false;
  };

  explicit AdaptiveLimit(const Options& options);

  // Folds in one interval and returns the limit to use from now on.
  Decision Update(const LoadSample& sample);

  // A new capacity (the node reported another one): the limit is clamped
  // to it; a higher capacity is approached by the growth rule.
  void SetCapacity(int capacity);

  int limit() const { return limit_; }
  int capacity() const { return options_.capacity; }
  // Why the limit is what it is, for people ("healthy", "foreground p99
  // 3.1 ms = 2.4x idle (1.3 ms)", "disk 97% busy", "holding: ...").
  const std::string& reason() const { return reason_; }
  // Current smoothed pressure (see above); 0 before any signal.
  double pressure() const { return pressure_; }
  // Idle foreground p99 learned so far, microseconds; < 0 if none yet.
  double idle_p99_micros() const { return idle_p99_; }
  // Healthy intervals the next probe of the ceiling waits for.
  int probe_wait() const { return probe_wait_; }

 private:
  static double Ewma(double old, double sample, double weight);

  Options options_;
  int limit_;
  double cpu_ = -1, disk_ = -1, p99_ = -1;
  double idle_p99_ = -1;
  double pressure_ = 0;
  int overloaded_run_ = 0;
  int healthy_run_ = 0;
  int cooldown_left_ = 0;
  // Lowest limit seen overloaded since it was last forgotten; 0 = none.
  int ceiling_ = 0;
  // Healthy intervals needed before the next probe of the ceiling.
  int probe_wait_;
  // A probe is on trial: overloaded before `grow_after` healthy
  // intervals means it failed.
  bool probe_pending_ = false;
  int probe_healthy_ = 0;
  std::string reason_ = "starting at capacity";
};

}  // namespace shutter::scheduler

#endif  // SHUTTER_SCHEDULER_ADAPTIVE_LIMIT_H_
