#include "common/rate_limiter.h"

#include "gtest/gtest.h"

namespace shutter {
namespace {

TEST(RateLimiterTest, HoldsTheRateAfterTheBurst) {
  FakeClock clock;
  const absl::Time start = clock.Now();
  RateLimiter limiter(1 << 20, /*burst_bytes=*/64 << 10, &clock);  // 1 MiB/s
  limiter.Request(64 << 10);  // the burst passes at once
  EXPECT_EQ(clock.Now(), start);
  for (int i = 0; i < 16; ++i) limiter.Request(64 << 10);  // 1 MiB more
  EXPECT_EQ(clock.Now() - start, absl::Seconds(1));
}

TEST(RateLimiterTest, LargeRequestsAreSplitAndIdleTimeRefillsOnlyTheBurst) {
  FakeClock clock;
  RateLimiter limiter(1000, /*burst_bytes=*/100, &clock);
  clock.Advance(absl::Hours(1));  // idle: refills to the burst, no more
  const absl::Time start = clock.Now();
  limiter.Request(1100);  // 100 from the burst, 1000 at 1000 B/s
  EXPECT_EQ(clock.Now() - start, absl::Seconds(1));
  EXPECT_EQ(limiter.bytes_per_second(), 1000u);
}

}  // namespace
}  // namespace shutter
