#include "common/latency_recorder.h"

#include <algorithm>
#include <cmath>

namespace shutter {

namespace {
const double kLogBase = std::log(1.1);
}  // namespace

int LatencyRecorder::BucketFor(absl::Duration d) {
  const double us = absl::ToDoubleMicroseconds(d);
  if (!(us >= 1.0)) return 0;  // also NaN and negatives
  const int i = 1 + static_cast<int>(std::log(us) / kLogBase);
  return std::min(i, kBuckets - 1);
}

double LatencyRecorder::BucketUpperMicros(int i) { return std::pow(1.1, i); }

void LatencyRecorder::Record(absl::Duration d) {
  counts_[BucketFor(d)].fetch_add(1, std::memory_order_relaxed);
}

LatencyRecorder::Window LatencyRecorder::TakeWindow() {
  absl::MutexLock l(&mu_);
  std::array<uint64_t, kBuckets> delta;
  Window w;
  for (int i = 0; i < kBuckets; ++i) {
    const uint64_t now = counts_[i].load(std::memory_order_relaxed);
    delta[i] = now - read_[i];
    read_[i] = now;
    w.count += delta[i];
  }
  if (w.count == 0) return w;
  // Rank of the q-quantile: the smallest value with at least q of the
  // samples at or below it.
  auto quantile = [&](double q) {
    const uint64_t rank =
        std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * w.count)));
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += delta[i];
      if (seen >= rank) return absl::Microseconds(BucketUpperMicros(i));
    }
    return absl::Microseconds(BucketUpperMicros(kBuckets - 1));
  };
  w.p50 = quantile(0.5);
  w.p99 = quantile(0.99);
  for (int i = kBuckets - 1; i >= 0; --i) {
    if (delta[i] > 0) {
      w.max = absl::Microseconds(BucketUpperMicros(i));
      break;
    }
  }
  return w;
}

}  // namespace shutter
