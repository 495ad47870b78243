#include "common/ids.h"

#include <set>

#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace shutter {
namespace {

using ::shutter::testing::StatusIs;

TEST(IdsTest, SafePathComponent) {
  EXPECT_TRUE(IsSafePathComponent("20261127T094634.123Z-1a2b3c4d"));
  EXPECT_TRUE(IsSafePathComponent("node_1.a-b"));
  EXPECT_FALSE(IsSafePathComponent(""));
  EXPECT_FALSE(IsSafePathComponent("."));
  EXPECT_FALSE(IsSafePathComponent(".."));
  EXPECT_FALSE(IsSafePathComponent(".hidden"));
  EXPECT_FALSE(IsSafePathComponent("a/b"));
  EXPECT_FALSE(IsSafePathComponent("a b"));
  EXPECT_FALSE(IsSafePathComponent(std::string(129, 'a')));
}

TEST(IdsTest, SnapshotIdsSortByCreationTime) {
  FakeClock clock(absl::FromUnixMillis(1'800'000'000'000));
  SnapshotIdGenerator gen(&clock);
  std::string a = gen.Next();
  clock.Advance(absl::Seconds(1));
  std::string b = gen.Next();
  clock.Advance(absl::Hours(24 * 400));
  std::string c = gen.Next();
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_TRUE(IsSafePathComponent(a));
  EXPECT_EQ(a.substr(0, 20), "20270115T080000.000Z");
}

TEST(IdsTest, UniqueAndIncreasingWhenClockStallsOrStepsBack) {
  FakeClock clock(absl::FromUnixMillis(1'800'000'000'000));
  SnapshotIdGenerator gen(&clock);
  std::vector<std::string> ids;
  for (int i = 0; i < 1000; ++i) ids.push_back(gen.Next());
  clock.Advance(absl::Seconds(-10));
  for (int i = 0; i < 10; ++i) ids.push_back(gen.Next());
  for (size_t i = 1; i < ids.size(); ++i) EXPECT_LT(ids[i - 1], ids[i]) << i;
}

TEST(IdsTest, ObserveExistingKeepsIdsAfterPersistedOnes) {
  FakeClock clock(absl::FromUnixMillis(1'800'000'000'000));
  SnapshotIdGenerator first(&clock);
  clock.Advance(absl::Hours(1));
  std::string later = first.Next();
  clock.Advance(absl::Hours(-2));  // the restarted process' clock is behind
  SnapshotIdGenerator second(&clock);
  second.ObserveExisting(later);
  second.ObserveExisting("garbage");
  EXPECT_LT(later, second.Next());
}

TEST(IdsTest, ParseIdList) {
  auto ids = ParseIdList("0,3,5-9,3");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<uint32_t>{0, 3, 5, 6, 7, 8, 9}));
  EXPECT_THAT(ParseIdList("1,,2"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseIdList("9-5"),
              StatusIs(absl::StatusCode::kInvalidArgument, "9-5"));
  EXPECT_THAT(ParseIdList("x"),
              StatusIs(absl::StatusCode::kInvalidArgument, "\"x\""));
  EXPECT_THAT(ParseIdList("1-2-3"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseIdList("-1"), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace shutter
