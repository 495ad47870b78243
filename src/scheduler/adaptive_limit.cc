#include "scheduler/adaptive_limit.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace shutter::scheduler {

namespace {
std::string Millis(double micros) {
  return absl::StrFormat("%.1f ms", micros / 1000.0);
}
}  // namespace

AdaptiveLimit::AdaptiveLimit(const Options& options) : options_(options) {
  options_.capacity = std::max(1, options_.capacity);
  options_.min_limit = std::clamp(options_.min_limit, 1, options_.capacity);
  limit_ = options_.capacity;
  probe_wait_ = std::max(1, options_.probe_after);
}

double AdaptiveLimit::Ewma(double old, double sample, double weight) {
  if (old < 0) return sample;
  return old + weight * (sample - old);
}

void AdaptiveLimit::SetCapacity(int capacity) {
  options_.capacity = std::max(1, capacity);
  options_.min_limit = std::min(options_.min_limit, options_.capacity);
  if (limit_ > options_.capacity) limit_ = options_.capacity;
  if (ceiling_ > options_.capacity) ceiling_ = 0;
}

AdaptiveLimit::Decision AdaptiveLimit::Update(const LoadSample& s) {
  const Options& o = options_;
  // 1. Smooth the signals. A signal not measured this interval is
  // forgotten rather than carried: stale pressure must not hold a limit
  // down once, say, the writes stop.
  cpu_ = s.cpu_busy >= 0 ? Ewma(cpu_, s.cpu_busy, o.smoothing) : -1;
  disk_ = s.disk_busy >= 0 ? Ewma(disk_, s.disk_busy, o.smoothing) : -1;
  p99_ = s.write_p99_micros >= 0 ? Ewma(p99_, s.write_p99_micros, o.smoothing)
                                 : -1;
  if (!s.snapshot_work && s.write_p99_micros >= 0) {
    idle_p99_ = Ewma(idle_p99_, s.write_p99_micros, o.baseline_smoothing);
  }

  // 2. Pressure: the worst signal relative to its threshold.
  pressure_ = 0;
  std::string what = "no load signal";
  auto consider = [&](double p, std::string desc) {
    if (p > pressure_ || what == "no load signal") {
      pressure_ = p;
      what = std::move(desc);
    }
  };
  if (o.latency_tolerance > 0 && p99_ >= 0 && idle_p99_ > 0) {
    const double threshold =
        std::max(idle_p99_ * o.latency_tolerance,
                 idle_p99_ + absl::ToDoubleMicroseconds(o.latency_floor));
    consider(p99_ / threshold,
             absl::StrFormat("foreground p99 %s = %.2fx idle %s", Millis(p99_),
                             p99_ / idle_p99_, Millis(idle_p99_)));
  }
  if (o.disk_busy_target > 0 && disk_ >= 0) {
    consider(disk_ / o.disk_busy_target,
             absl::StrFormat("disk %.0f%% busy", disk_ * 100));
  }
  if (o.write_stall_target > 0 && s.write_stall_fraction > 0) {
    // Not smoothed: a stall is never noise.
    consider(s.write_stall_fraction / o.write_stall_target,
             absl::StrFormat("writes stalled %.0f%% of the interval",
                             s.write_stall_fraction * 100));
  }
  if (o.cpu_busy_target > 0 && cpu_ >= 0) {
    consider(cpu_ / o.cpu_busy_target,
             absl::StrFormat("cpu %.0f%% busy", cpu_ * 100));
  }

  // 3. Classify, with a band in between where nothing changes.
  const bool overloaded = pressure_ > 1.0;
  const bool healthy = pressure_ < o.healthy_below;
  const bool severe = pressure_ > o.severe;
  const bool in_use =
      s.queued > 0 || (s.in_flight > 0 && s.in_flight >= limit_);
  if (overloaded) {
    ++overloaded_run_;
    healthy_run_ = 0;
  } else if (healthy && in_use) {
    ++healthy_run_;
    overloaded_run_ = 0;
  } else {
    overloaded_run_ = 0;
    healthy_run_ = 0;
  }
  if (cooldown_left_ > 0) --cooldown_left_;
  if (probe_pending_ && healthy && ++probe_healthy_ >= o.grow_after) {
    probe_pending_ = false;  // the probe held: the load went down
    probe_wait_ = std::max(1, o.probe_after);
  }

  Decision d;
  const int before = limit_;
  // Only snapshot work can be backed off: an overloaded node with none
  // running is overloaded by its own traffic, and a lower limit would only
  // slow the next snapshot without helping now.
  if (overloaded && !s.snapshot_work && s.in_flight == 0) {
    overloaded_run_ = 0;
    reason_ = absl::StrCat(what, ": overloaded without snapshot work, holding");
    return Decision{limit_, false};
  }
  if (overloaded && limit_ > o.min_limit && cooldown_left_ == 0 &&
      (severe || overloaded_run_ >= o.decrease_after)) {
    // Gradient: cut in proportion to the overload (a 10% overload costs
    // about 10% of the limit), at least one slot, at most to `backoff`;
    // a severe overload halves.
    const double factor = severe ? std::min(0.5, o.backoff)
                                 : std::max(o.backoff, 1.0 / pressure_);
    int next = static_cast<int>(severe ? std::floor(limit_ * factor)
                                       : std::ceil(limit_ * factor));
    next = std::clamp(next, o.min_limit, limit_ - 1);
    ceiling_ = ceiling_ == 0 ? limit_ : std::min(ceiling_, limit_);
    if (probe_pending_) {  // the probe failed: wait longer for the next
      probe_pending_ = false;
      probe_wait_ = std::min(2 * probe_wait_, std::max(1, o.max_probe_after));
    }
    limit_ = next;
    cooldown_left_ = o.cooldown;
    overloaded_run_ = 0;
    reason_ = absl::StrCat(what, severe ? " (severe)" : "", ": backed off ",
                           before, " -> ", limit_);
  } else if (healthy && limit_ < o.capacity) {
    const bool probing = ceiling_ > 0 && limit_ + 1 >= ceiling_;
    const int need = probing ? probe_wait_ : o.grow_after;
    if (healthy_run_ >= need) {
      ++limit_;
      healthy_run_ = 0;
      if (probing) {
        ceiling_ = 0;
        probe_pending_ = true;
        probe_healthy_ = 0;
      }
      reason_ =
          absl::StrCat(what, ": healthy, grew ", before, " -> ", limit_,
                       probing ? " (probing the last overloaded limit)" : "");
    } else if (!in_use) {
      reason_ = absl::StrCat(what, ": healthy, limit not in use");
    } else {
      reason_ = absl::StrCat(what, ": healthy, growing in ",
                             need - healthy_run_, " interval(s)");
    }
  } else if (overloaded) {
    reason_ = absl::StrCat(
        what, limit_ <= o.min_limit ? ": overloaded at the minimum limit"
              : cooldown_left_ > 0  ? ": overloaded, waiting for the last "
                                      "decrease to show"
                                    : ": overloaded, confirming");
  } else if (healthy) {
    reason_ = absl::StrCat(what, ": healthy");
  } else {
    reason_ = absl::StrCat(what, ": near target, holding");
  }
  d.limit = limit_;
  d.changed = limit_ != before;
  return d;
}

}  // namespace shutter::scheduler
