#ifndef SHUTTER_COMMON_LATENCY_RECORDER_H_
#define SHUTTER_COMMON_LATENCY_RECORDER_H_

#include <array>
#include <atomic>
#include <cstdint>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace shutter {

// A latency distribution for hot paths, read as consecutive windows (what
// happened since the last read). Record() is one relaxed atomic add, from
// any thread; buckets grow by 10%, so quantiles are within 10% (they are
// reported as the bucket's upper bound: never optimistic).
//
// Thread-safe.
class LatencyRecorder {
 public:
  struct Window {
    uint64_t count = 0;
    absl::Duration p50;
    absl::Duration p99;
    absl::Duration max;
  };

  void Record(absl::Duration d);

  // The distribution recorded since the previous TakeWindow() (the first:
  // since construction). Zero counts and durations if nothing was.
  Window TakeWindow() ABSL_LOCKS_EXCLUDED(mu_);

  // Upper bound, in microseconds, of bucket `i`.
  static double BucketUpperMicros(int i);

 private:
  // Bucket 0: < 1 us; bucket i: [1.1^(i-1), 1.1^i) us; the last catches
  // everything above 1.1^248 us (about 5 hours).
  static constexpr int kBuckets = 250;
  static int BucketFor(absl::Duration d);

  std::array<std::atomic<uint64_t>, kBuckets> counts_{};
  absl::Mutex mu_;
  std::array<uint64_t, kBuckets> read_ ABSL_GUARDED_BY(mu_){};
};

}  // namespace shutter

#endif  // SHUTTER_COMMON_LATENCY_RECORDER_H_
