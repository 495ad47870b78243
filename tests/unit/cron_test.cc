#include "controller/cron.h"

#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace shutter::controller {
namespace {

using ::shutter::testing::StatusIs;

absl::Time T(const char* utc) {
  absl::Time t;
  std::string err;
  EXPECT_TRUE(absl::ParseTime("%Y-%m-%d %H:%M", utc, &t, &err)) << err;
  return t;
}

std::string Next(const char* expr, const char* after) {
  auto c = CronExpr::Parse(expr);
  EXPECT_TRUE(c.ok()) << c.status();
  if (!c.ok()) return "";
  absl::Time n = c->Next(T(after));
  if (n == absl::InfiniteFuture()) return "never";
  return absl::FormatTime("%Y-%m-%d %H:%M %a", n, absl::UTCTimeZone());
}

TEST(CronTest, NextMatchesStrictlyAfter) {
  EXPECT_EQ(Next("* * * * *", "2026-11-27 18:00"), "2026-11-27 18:01 Fri");
  EXPECT_EQ(Next("0 */6 * * *", "2026-11-27 18:00"), "2026-11-28 00:00 Sat");
  EXPECT_EQ(Next("0 */6 * * *", "2026-11-27 17:59"), "2026-11-27 18:00 Fri");
  EXPECT_EQ(Next("30 2 * * 1", "2026-11-27 18:00"), "2026-11-30 02:30 Mon");
  EXPECT_EQ(Next("15,45 9-10 * * *", "2026-11-27 09:20"),
            "2026-11-27 09:45 Fri");
  EXPECT_EQ(Next("0 0 1 * *", "2026-12-15 00:00"), "2027-01-01 00:00 Fri");
  EXPECT_EQ(Next("0 12 29 2 *", "2026-03-01 00:00"), "2028-02-29 12:00 Tue");
  // Sunday is 0 and 7.
  EXPECT_EQ(Next("0 0 * * 7", "2026-11-27 00:00"), "2026-11-29 00:00 Sun");
  EXPECT_EQ(Next("0 0 * * 0", "2026-11-27 00:00"), "2026-11-29 00:00 Sun");
  // Both day fields restricted: either matches (13th or a Friday).
  EXPECT_EQ(Next("0 0 13 * 5", "2026-11-27 00:00"), "2026-12-04 00:00 Fri");
  EXPECT_EQ(Next("0 0 13 * 5", "2026-12-05 00:00"), "2026-12-11 00:00 Fri");
  EXPECT_EQ(Next("0 0 13 * 5", "2026-12-12 00:00"), "2026-12-13 00:00 Sun");
  EXPECT_EQ(Next("0 0 30 2 *", "2026-01-01 00:00"), "never");
}

TEST(CronTest, MalformedExpressionsNameTheField) {
  EXPECT_THAT(CronExpr::Parse("* * * *"),
              StatusIs(absl::StatusCode::kInvalidArgument, "5 fields"));
  EXPECT_THAT(CronExpr::Parse("60 * * * *"),
              StatusIs(absl::StatusCode::kInvalidArgument, "minute"));
  EXPECT_THAT(CronExpr::Parse("* 24 * * *"),
              StatusIs(absl::StatusCode::kInvalidArgument, "hour"));
  EXPECT_THAT(CronExpr::Parse("* * 0 * *"),
              StatusIs(absl::StatusCode::kInvalidArgument, "day-of-month"));
  EXPECT_THAT(CronExpr::Parse("* * * 13 *"),
              StatusIs(absl::StatusCode::kInvalidArgument, "month"));
  EXPECT_THAT(CronExpr::Parse("* * * * 8"),
              StatusIs(absl::StatusCode::kInvalidArgument, "day-of-week"));
  for (const char* bad : {"*/0 * * * *", "5-1 * * * *", "a * * * *",
                          "1,,2 * * * *", "*/ * * * *", "- * * * *"}) {
    EXPECT_THAT(CronExpr::Parse(bad),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
}

}  // namespace
}  // namespace shutter::controller
