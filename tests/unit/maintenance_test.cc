#include "controller/maintenance.h"

#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace shutter::controller {
namespace {

using ::shutter::testing::StatusIs;
using shutter::v1::RetentionPolicy;
using shutter::v1::SnapshotState;
using shutter::v1::SnapshotSummary;

const absl::Time kNow = absl::FromUnixSeconds(1800000000);

// Newest first, as ListSnapshots returns them; `age_h` hours old.
SnapshotSummary S(const std::string& id, SnapshotState state, int age_h,
                  const std::string& label = "", bool pinned = false) {
  SnapshotSummary s;
  s.set_snapshot_id(id);
  s.set_state(state);
  s.set_label(label);
  s.set_pinned(pinned);
  s.set_created_at_micros(absl::ToUnixMicros(kNow - absl::Hours(age_h)));
  return s;
}

constexpr auto kCommitted = shutter::v1::SNAPSHOT_STATE_COMMITTED;
constexpr auto kPartial = shutter::v1::SNAPSHOT_STATE_PARTIAL;
constexpr auto kFailed = shutter::v1::SNAPSHOT_STATE_FAILED;
constexpr auto kDeleted = shutter::v1::SNAPSHOT_STATE_DELETED;

std::vector<std::string> Deleted(const RetentionPolicy& p,
                                 const std::vector<SnapshotSummary>& s) {
  auto r = Maintenance::Plan(p, s, kNow);
  return {r.deleted().begin(), r.deleted().end()};
}

TEST(RetentionPlanTest, NoPolicyKeepsEverything) {
  std::vector<SnapshotSummary> s = {
      S("s3", kCommitted, 1), S("s2", kCommitted, 2), S("s1", kCommitted, 3)};
  EXPECT_TRUE(Deleted(RetentionPolicy(), s).empty());
  auto r = Maintenance::Plan(RetentionPolicy(), s, kNow);
  ASSERT_EQ(r.kept_size(), 3);
  EXPECT_EQ(r.kept(0).reason(), "newest");
  EXPECT_EQ(r.kept(1).reason(), "no policy");
}

TEST(RetentionPlanTest,
     KeepLastCountsUsableSnapshotsOnlyAndDeletesOldestFirst) {
  RetentionPolicy p;
  p.set_keep_last(2);
  std::vector<SnapshotSummary> s = {
      S("s6", kFailed, 1),  S("s5", kCommitted, 2), S("s4", kPartial, 3),
      S("s3", kDeleted, 4), S("s2", kCommitted, 5), S("s1", kCommitted, 6)};
  EXPECT_EQ(Deleted(p, s), (std::vector<std::string>{"s1", "s2"}));
}

TEST(RetentionPlanTest, TheNewestCommittedAndPinnedAreAlwaysKept) {
  RetentionPolicy p;
  p.set_keep_within_seconds(60);  // keeps nothing here by age
  std::vector<SnapshotSummary> s = {
      S("s4", kPartial, 1), S("s3", kCommitted, 2),
      S("s2", kCommitted, 3, "", true), S("s1", kCommitted, 4)};
  auto r = Maintenance::Plan(p, s, kNow);
  EXPECT_EQ(std::vector<std::string>(r.deleted().begin(), r.deleted().end()),
            (std::vector<std::string>{"s1", "s4"}));
  ASSERT_EQ(r.kept_size(), 2);
  EXPECT_EQ(r.kept(0).snapshot_id(), "s3");
  EXPECT_EQ(r.kept(0).reason(), "newest");
  EXPECT_EQ(r.kept(1).reason(), "pinned");
  // With only partial snapshots, the newest of them stands in.
  EXPECT_EQ(Deleted(p, {S("b", kPartial, 1), S("a", kPartial, 2)}),
            std::vector<std::string>{"a"});
}

TEST(RetentionPlanTest, KeepWithinAndLabelsAreAlternatives) {
  RetentionPolicy p;
  p.set_keep_within_seconds(36 * 3600);
  p.add_keep_labels("monthly");
  std::vector<SnapshotSummary> s = {
      S("s5", kCommitted, 1), S("s4", kCommitted, 30), S("s3", kCommitted, 40),
      S("s2", kCommitted, 50, "monthly"), S("s1", kCommitted, 60, "hourly")};
  auto r = Maintenance::Plan(p, s, kNow);
  EXPECT_EQ(std::vector<std::string>(r.deleted().begin(), r.deleted().end()),
            (std::vector<std::string>{"s1", "s3"}));
  EXPECT_EQ(r.kept(1).reason(), "keep-within");
  EXPECT_EQ(r.kept(2).reason(), "label");
}

TEST(RetentionPlanTest, BadPoliciesAreRefused) {
  RetentionPolicy p;
  p.set_keep_within_seconds(-1);
  EXPECT_THAT(Maintenance::CheckPolicy(p),
              StatusIs(absl::StatusCode::kInvalidArgument));
  p.set_keep_within_seconds(0);
  p.add_keep_labels("bad\x1b[2J");
  EXPECT_THAT(Maintenance::CheckPolicy(p),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace shutter::controller
