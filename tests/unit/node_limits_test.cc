// NodeLimits: the effective per-node limit from capacity, the adaptive
// rule and operator pins (durable in a real RocksDB job store).
#include "controller/node_limits.h"

#include "controller/job_store.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter::controller {
namespace {

shutter::v1::NodeLoad Load(int64_t p99_micros, bool snapshot_work) {
  shutter::v1::NodeLoad l;
  l.set_interval_millis(1000);
  l.set_cpu_busy(0.3);
  l.set_disk_busy(0.2);
  l.set_foreground_writes(500);
  l.set_foreground_write_p99_micros(p99_micros);
  l.set_snapshot_work(snapshot_work);
  return l;
}

TEST(NodeLimitsTest, CapacityUntilLoadSaysOtherwise) {
  NodeLimits limits({}, nullptr);
  EXPECT_EQ(limits.Effective("n1", 4), 4);  // never observed
  // First heartbeat: the limit is returned for the scheduler.
  EXPECT_EQ(limits.Observe("n1", 4, nullptr, 0, 0), 4);
  EXPECT_EQ(limits.Observe("n1", 4, nullptr, 0, 0), std::nullopt);
  EXPECT_EQ(limits.Describe("n1").reason, "no load reported: the capacity");
  // Idle intervals teach the baseline; then a snapshot makes p99 triple.
  const auto idle = Load(2000, false);
  for (int i = 0; i < 5; ++i) limits.Observe("n1", 4, &idle, 0, 0);
  const auto busy = Load(6000, true);
  std::optional<int> changed;
  for (int i = 0; i < 3 && !changed; ++i) {
    changed = limits.Observe("n1", 4, &busy, 4, 10);
  }
  ASSERT_TRUE(changed.has_value());
  EXPECT_LT(*changed, 4);
  EXPECT_EQ(limits.Effective("n1", 4), *changed);
  NodeLimits::View v = limits.Describe("n1");
  EXPECT_EQ(v.limit, static_cast<uint32_t>(*changed));
  EXPECT_EQ(v.capacity, 4u);
  EXPECT_NE(v.reason.find("foreground p99"), std::string::npos) << v.reason;
  EXPECT_NEAR(v.idle_write_p99_micros, 2000, 1);
  EXPECT_EQ(v.decreases, 1u);
  EXPECT_TRUE(v.has_load);
  // A lower capacity clamps at once.
  EXPECT_EQ(limits.Observe("n1", 1, &busy, 1, 10), 1);
}

TEST(NodeLimitsTest, AdaptiveOffMeansCapacity) {
  NodeLimits::Options o;
  o.adaptive = false;
  NodeLimits limits(o, nullptr);
  const auto busy = Load(60000, true), idle = Load(1000, false);
  limits.Observe("n1", 4, &idle, 0, 0);
  for (int i = 0; i < 10; ++i) limits.Observe("n1", 4, &busy, 4, 10);
  EXPECT_EQ(limits.Effective("n1", 4), 4);
  EXPECT_EQ(limits.Describe("n1").reason, "adaptive limits off: the capacity");
}

TEST(NodeLimitsTest, HeadroomForRequestsSentAheadFollowsTheLoad) {
  NodeLimits limits({}, nullptr);
  EXPECT_TRUE(limits.HasHeadroom("n1"));  // never observed
  limits.Observe("n1", 4, nullptr, 0, 0);
  EXPECT_TRUE(limits.HasHeadroom("n1"));  // no load reported
  const auto idle = Load(2000, false);
  for (int i = 0; i < 5; ++i) limits.Observe("n1", 4, &idle, 0, 0);
  EXPECT_TRUE(limits.HasHeadroom("n1"));
  // One interval at three times the idle p99: not healthy, even before
  // the rule lowers the limit (it waits for two in a row).
  const auto busy = Load(6000, true);
  limits.Observe("n1", 4, &busy, 4, 0);
  EXPECT_EQ(limits.Effective("n1", 4), 4);
  EXPECT_FALSE(limits.HasHeadroom("n1"));
  // Healthy again once the smoothed pressure is back under the band.
  for (int i = 0; i < 10; ++i) limits.Observe("n1", 4, &idle, 0, 0);
  EXPECT_TRUE(limits.HasHeadroom("n1"));
  // Without the adaptive rule every node has it.
  NodeLimits::Options off;
  off.adaptive = false;
  NodeLimits fixed(off, nullptr);
  for (int i = 0; i < 3; ++i) fixed.Observe("n1", 4, &busy, 4, 0);
  EXPECT_TRUE(fixed.HasHeadroom("n1"));
}

TEST(NodeLimitsTest, PinsOverrideAndSurviveRestarts) {
  testing::TempDir dir;
  {
    auto store = RocksDbJobStore::Open(dir.Sub("jobs"));
    ASSERT_OK(store.status());
    NodeLimits limits({}, store->get());
    ASSERT_OK(limits.Load());
    EXPECT_EQ(limits.Pin("n1", 2).status().code(),
              absl::StatusCode::kFailedPrecondition);  // never heard of
    limits.Observe("n1", 4, nullptr, 0, 0);
    EXPECT_EQ(limits.Pin("n1", 5).status().code(),
              absl::StatusCode::kInvalidArgument);  // above capacity
    auto pinned = limits.Pin("n1", 2);
    ASSERT_OK(pinned.status());
    EXPECT_EQ(*pinned, 2);
    EXPECT_EQ(limits.Effective("n1", 4), 2);
    EXPECT_EQ(limits.Describe("n1").reason, "pinned by an operator");
    // The rule keeps learning underneath but does not move a pinned node.
    const auto idle = Load(1000, false), busy = Load(9000, true);
    for (int i = 0; i < 5; ++i) limits.Observe("n1", 4, &idle, 0, 0);
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(limits.Observe("n1", 4, &busy, 2, 10), std::nullopt);
    }
    EXPECT_EQ(limits.Effective("n1", 4), 2);
  }
  {
    // A new controller on the same store: the pin is still there, before
    // and after the node's first heartbeat.
    auto store = RocksDbJobStore::Open(dir.Sub("jobs"));
    ASSERT_OK(store.status());
    NodeLimits limits({}, store->get());
    ASSERT_OK(limits.Load());
    EXPECT_EQ(limits.Effective("n1", 4), 2);
    EXPECT_EQ(limits.Observe("n1", 4, nullptr, 0, 0), 2);
    EXPECT_EQ(limits.Describe("n1").pinned, 2u);
    // Unpinned: back to the capacity (no load reported to this one).
    auto unpinned = limits.Pin("n1", 0);
    ASSERT_OK(unpinned.status());
    EXPECT_EQ(*unpinned, 4);
  }
  {
    auto store = RocksDbJobStore::Open(dir.Sub("jobs"));
    ASSERT_OK(store.status());
    NodeLimits limits({}, store->get());
    ASSERT_OK(limits.Load());
    EXPECT_EQ(limits.Effective("n1", 4), 4);
  }
}

}  // namespace
}  // namespace shutter::controller
