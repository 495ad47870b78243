#include "controller/node_registry.h"

#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace shutter::controller {
namespace {

using ::shutter::testing::StatusIs;
using shutter::v1::HeartbeatRequest;

HeartbeatRequest Beat(const std::string& node,
                      std::vector<std::tuple<uint32_t, bool, uint64_t>> parts,
                      uint32_t capacity = 2) {
  HeartbeatRequest r;
  r.set_node_id(node);
  r.set_address(node + ":1");
  r.set_checkpoint_capacity(capacity);
  for (auto [id, leader, epoch] : parts) {
    auto* p = r.add_partitions();
    p->set_partition_id(id);
    p->set_role(leader ? shutter::v1::PARTITION_ROLE_LEADER
                       : shutter::v1::PARTITION_ROLE_FOLLOWER);
    p->set_leader_epoch(epoch);
    p->set_approximate_size_bytes(100 * id);
  }
  return r;
}

class NodeRegistryTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  NodeRegistry registry_{{absl::Seconds(10)}, &clock_};
};

TEST_F(NodeRegistryTest, LeaderIsLiveClaimantWithHighestEpoch) {
  ASSERT_OK(registry_.Heartbeat(Beat("a", {{1, true, 3}})));
  ASSERT_OK(registry_.Heartbeat(Beat("b", {{1, true, 4}})));
  auto l = registry_.ResolveLeader(1);
  ASSERT_OK(l);
  EXPECT_EQ(l->node_id, "b");
  EXPECT_EQ(l->epoch, 4u);
  EXPECT_EQ(l->address, "b:1");
  // A lower epoch claim arriving later does not win.
  ASSERT_OK(registry_.Heartbeat(Beat("a", {{1, true, 3}})));
  EXPECT_EQ(registry_.ResolveLeader(1)->node_id, "b");
}

TEST_F(NodeRegistryTest, FollowersAreNotLeaders) {
  ASSERT_OK(registry_.Heartbeat(Beat("a", {{1, false, 9}})));
  ASSERT_OK(registry_.Heartbeat(Beat("b", {{1, true, 2}})));
  EXPECT_EQ(registry_.ResolveLeader(1)->node_id, "b");
}

TEST_F(NodeRegistryTest, EqualEpochClaimsAreAConflict) {
  ASSERT_OK(registry_.Heartbeat(Beat("a", {{1, true, 5}})));
  ASSERT_OK(registry_.Heartbeat(Beat("b", {{1, true, 5}})));
  EXPECT_THAT(registry_.ResolveLeader(1),
              StatusIs(absl::StatusCode::kFailedPrecondition, "conflicting"));
  auto parts = registry_.ListPartitions();
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_TRUE(parts[0].conflict());
  EXPECT_EQ(parts[0].leader_node_id(), "");
  // The conflict clears when one side moves to a higher epoch.
  ASSERT_OK(registry_.Heartbeat(Beat("b", {{1, true, 6}})));
  EXPECT_EQ(registry_.ResolveLeader(1)->node_id, "b");
}

TEST_F(NodeRegistryTest, DeadNodesAreKeptButNotLeaders) {
  ASSERT_OK(registry_.Heartbeat(Beat("a", {{1, true, 7}})));
  clock_.Advance(absl::Seconds(5));
  ASSERT_OK(registry_.Heartbeat(Beat("b", {{1, true, 2}})));
  EXPECT_EQ(registry_.ResolveLeader(1)->node_id, "a");
  clock_.Advance(absl::Seconds(5));  // a: 10s since heartbeat -> dead
  EXPECT_EQ(registry_.ResolveLeader(1)->node_id, "b");
  auto nodes = registry_.ListNodes();
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[0].node_id(), "a");
  EXPECT_FALSE(nodes[0].alive());
  EXPECT_EQ(nodes[0].millis_since_heartbeat(), 10000);
  EXPECT_TRUE(nodes[1].alive());
  clock_.Advance(absl::Seconds(10));
  EXPECT_THAT(
      registry_.ResolveLeader(1),
      StatusIs(absl::StatusCode::kFailedPrecondition, "no live leader"));
  EXPECT_EQ(registry_.ListNodes().size(), 2u);
  // A heartbeat revives a node.
  ASSERT_OK(registry_.Heartbeat(Beat("a", {{1, true, 7}})));
  EXPECT_EQ(registry_.ResolveLeader(1)->node_id, "a");
}

TEST_F(NodeRegistryTest, HeartbeatReplacesThePartitionList) {
  ASSERT_OK(registry_.Heartbeat(Beat("a", {{1, true, 1}, {2, true, 1}})));
  ASSERT_OK(registry_.Heartbeat(Beat("a", {{2, true, 1}})));
  EXPECT_THAT(registry_.ResolveLeader(1),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(registry_.ListPartitions().size(), 1u);
}

TEST_F(NodeRegistryTest, RejectsBadHeartbeats) {
  EXPECT_THAT(registry_.Heartbeat(Beat("", {})),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(registry_.Heartbeat(Beat("../x", {})),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(registry_.Heartbeat(Beat("a", {}, 0)),
              StatusIs(absl::StatusCode::kInvalidArgument, "capacity"));
  EXPECT_THAT(registry_.Heartbeat(Beat("a", {{1, true, 1}, {1, true, 2}})),
              StatusIs(absl::StatusCode::kInvalidArgument, "twice"));
  auto no_addr = Beat("a", {});
  no_addr.clear_address();
  EXPECT_THAT(registry_.Heartbeat(no_addr),
              StatusIs(absl::StatusCode::kInvalidArgument, "address"));
  EXPECT_TRUE(registry_.ListNodes().empty());
}

TEST_F(NodeRegistryTest, ListsCountsAndCapacity) {
  ASSERT_OK(registry_.Heartbeat(Beat("a", {{1, true, 1}, {2, false, 0}}, 3)));
  auto nodes = registry_.ListNodes();
  ASSERT_EQ(nodes.size(), 1u);
  EXPECT_EQ(nodes[0].partitions_hosted(), 2u);
  EXPECT_EQ(nodes[0].partitions_led(), 1u);
  EXPECT_EQ(*registry_.Capacity("a"), 3u);
  EXPECT_THAT(registry_.Capacity("zz"), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace shutter::controller
