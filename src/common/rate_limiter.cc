#include "common/rate_limiter.h"

#include <algorithm>

#include "absl/time/clock.h"

namespace shutter {

RateLimiter::RateLimiter(uint64_t bytes_per_second, uint64_t burst_bytes,
                         Clock* clock)
    : rate_(std::max<uint64_t>(1, bytes_per_second)),
      burst_(burst_bytes > 0 ? burst_bytes
                             : std::max<uint64_t>(64 << 10, rate_ / 10)),
      clock_(clock),
      tokens_(static_cast<double>(burst_)),
      last_(clock->Now()) {}

void RateLimiter::Request(uint64_t bytes) {
  while (bytes > 0) {
    const uint64_t part = std::min(bytes, burst_);
    absl::Duration wait;
    {
      absl::MutexLock l(&mu_);
      absl::Time now = clock_->Now();
      tokens_ = std::min<double>(
          burst_, tokens_ + absl::ToDoubleSeconds(now - last_) * rate_);
      last_ = now;
      // Take the tokens now (possibly going negative) and sleep off the
      // debt outside the lock: waiters queue up in arrival order.
      tokens_ -= static_cast<double>(part);
      if (tokens_ < 0) wait = absl::Seconds(-tokens_ / rate_);
    }
    if (wait > absl::ZeroDuration()) clock_->SleepFor(wait);
    bytes -= part;
  }
}

}  // namespace shutter
