#ifndef SHUTTER_COMMON_RATE_LIMITER_H_
#define SHUTTER_COMMON_RATE_LIMITER_H_

#include <cstdint>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace shutter {

// Limits a byte stream shared by many threads to `bytes_per_second`
// (a token bucket holding at most `burst_bytes`). Request() blocks the
// caller until its bytes fit. Used to throttle snapshot I/O, e.g. a node's
// publish bandwidth, so that a remote repository is modelled faithfully or
// foreground traffic keeps its share of the disk. Thread-safe.
class RateLimiter {
 public:
  // bytes_per_second > 0. burst_bytes defaults to 1/10 s worth (>= 64 KiB).
  // `clock` (default: the real one) must outlive the limiter.
  explicit RateLimiter(uint64_t bytes_per_second, uint64_t burst_bytes = 0,
                       Clock* clock = Clock::Real());

  // Blocks until `bytes` may pass. Requests larger than the burst are
  // granted in burst-sized parts.
  void Request(uint64_t bytes) ABSL_LOCKS_EXCLUDED(mu_);

  uint64_t bytes_per_second() const { return rate_; }

 private:
  const uint64_t rate_;
  const uint64_t burst_;
  Clock* const clock_;
  absl::Mutex mu_;
  double tokens_ ABSL_GUARDED_BY(mu_);
  absl::Time last_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shutter

#endif  // SHUTTER_COMMON_RATE_LIMITER_H_
