#include "common/text.h"

#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace shutter {
namespace {

TEST(ParseDurationFlagTest, DaysAndAbseilDurations) {
  auto week = ParseDurationFlag("--keep", "7d");
  ASSERT_OK(week);
  EXPECT_EQ(*week, absl::Hours(168));
  auto mixed = ParseDurationFlag("--keep", "1h30m");
  ASSERT_OK(mixed);
  EXPECT_EQ(*mixed, absl::Minutes(90));
}

TEST(ParseDurationFlagTest, OutOfRangeAndGarbageAreRefusedNotOverflowed) {
  // Found by text_fuzz: a day count past int64 was multiplied anyway.
  for (const char* bad : {"99999999999999999999999999999999d", "1000000d",
                          "-1d", "d", "x7d", "inf", "-5s", ""}) {
    SCOPED_TRACE(bad);
    auto d = ParseDurationFlag("--keep", bad);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(d.status().message().find("--keep"), std::string::npos);
  }
}

}  // namespace
}  // namespace shutter
