#include "controller/node_registry.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace shutter::controller {
namespace {

using ::shutter::testing::StatusIs;
using shutter::v1::HeartbeatRequest;

// A heartbeat from incarnation "<node>-inst" (start 1) at "<node>:1".
HeartbeatRequest Beat(const std::string& node,
                      std::vector<std::tuple<uint32_t, bool, uint64_t>> parts,
                      uint32_t capacity = 2) {
  HeartbeatRequest r;
  r.set_node_id(node);
  r.set_address(node + ":1");
  r.set_checkpoint_capacity(capacity);
  r.mutable_instance()->set_instance_id(node + "-inst");
  r.mutable_instance()->set_start_count(1);
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
  NodeRegistry registry_{{absl::Seconds(10), "", ""}, &clock_};
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
  auto no_instance = Beat("a", {});
  no_instance.clear_instance();
  EXPECT_THAT(registry_.Heartbeat(no_instance),
              StatusIs(absl::StatusCode::kInvalidArgument, "instance"));
  // A long id is quoted, not echoed whole.
  auto s = registry_.Heartbeat(Beat(std::string(10000, 'x') + "/", {}));
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_LT(s.message().size(), 300u);
  EXPECT_TRUE(registry_.ListNodes().empty());
}

// A silent incarnation is not proof of a second process: a new one waits
// (UNAVAILABLE, retryable) instead of being refused for good; one that
// said it was leaving is released at once.
TEST_F(NodeRegistryTest, SilentOrLeavingIncarnationsDoNotRefuseANewOne) {
  ASSERT_OK(registry_.Heartbeat(Beat("n1", {{0, true, 5}})));
  auto fresh = Beat("n1", {{0, true, 1}});
  fresh.mutable_instance()->set_instance_id("new-disk");
  EXPECT_THAT(registry_.Heartbeat(fresh),
              StatusIs(absl::StatusCode::kAlreadyExists));  // alive
  clock_.Advance(absl::Seconds(4));  // silent (> 3 s), not dead (10 s)
  auto s = registry_.Heartbeat(fresh);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable, "accepted once"));
  EXPECT_EQ(registry_.ResolveLeader(0)->instance_id, "n1-inst");
  // The registered incarnation beats again: alive, the new one refused.
  ASSERT_OK(registry_.Heartbeat(Beat("n1", {{0, true, 5}})));
  EXPECT_THAT(registry_.Heartbeat(fresh),
              StatusIs(absl::StatusCode::kAlreadyExists));
  // Leaving: only the registered incarnation can release itself.
  auto impostor_leaving = fresh;
  impostor_leaving.set_leaving(true);
  ASSERT_OK(registry_.Heartbeat(impostor_leaving));
  EXPECT_TRUE(registry_.IsAlive("n1"));
  auto leaving = Beat("n1", {});
  leaving.set_partitions_omitted(true);
  leaving.set_leaving(true);
  ASSERT_OK(registry_.Heartbeat(leaving));
  // Still alive and leading (a rolling restart brings the same incarnation
  // back within dead_after) ...
  EXPECT_TRUE(registry_.IsAlive("n1"));
  EXPECT_EQ(registry_.ResolveLeader(0)->instance_id, "n1-inst");
  // ... but another incarnation (a replaced disk) is accepted at once.
  ASSERT_OK(registry_.Heartbeat(fresh));
  EXPECT_EQ(registry_.ResolveLeader(0)->instance_id, "new-disk");
}

// A task's answer updates the registry at once; a heartbeat built before
// the change (older epoch, same process) does not take it back.
TEST_F(NodeRegistryTest, ObservedEpochsOnlyGrowWithinAProcess) {
  ASSERT_OK(registry_.Heartbeat(Beat("n1", {{0, true, 5}, {1, true, 5}})));
  EXPECT_FALSE(registry_.ObservePartition("n1", "other-inst", 0, 6, 10));
  EXPECT_FALSE(registry_.ObservePartition("n1", "n1-inst", 9, 6, 10));
  EXPECT_FALSE(registry_.ObservePartition("n1", "n1-inst", 0, 4, 10));
  EXPECT_TRUE(registry_.ObservePartition("n1", "n1-inst", 0, 6, 10));
  auto parts = registry_.ListPartitions();
  EXPECT_EQ(parts[0].leader_epoch(), 6u);
  EXPECT_EQ(parts[0].applied_index(), 10u);
  EXPECT_EQ(registry_.ResolveLeader(0)->epoch, 6u);
  // A stale report (built mid-swap) keeps the newer epoch.
  ASSERT_OK(registry_.Heartbeat(Beat("n1", {{0, true, 5}, {1, true, 5}})));
  EXPECT_EQ(registry_.ResolveLeader(0)->epoch, 6u);
  EXPECT_EQ(registry_.ResolveLeader(1)->epoch, 5u);
  // The next report carries it; a new process (start 2) reports afresh.
  ASSERT_OK(registry_.Heartbeat(Beat("n1", {{0, true, 7}, {1, true, 5}})));
  EXPECT_EQ(registry_.ResolveLeader(0)->epoch, 7u);
}

TEST_F(NodeRegistryTest, SecondIncarnationIsRefusedWhileTheFirstIsAlive) {
  ASSERT_OK(registry_.Heartbeat(Beat("n1", {{0, true, 5}, {1, true, 5}})));
  // Another process claims n1 from a fresh data directory, elsewhere.
  auto impostor = Beat("n1", {{0, true, 1}, {1, true, 9}});
  impostor.set_address("10.0.0.2:7100");
  impostor.mutable_instance()->set_instance_id("other");
  auto s = registry_.Heartbeat(impostor);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_NE(s.message().find("n1:1"), std::string::npos) << s;
  EXPECT_NE(s.message().find("10.0.0.2:7100"), std::string::npos) << s;
  // Nothing of its claims is used: the registered n1 still leads at 5.
  auto leader = registry_.ResolveLeader(1);
  ASSERT_OK(leader);
  EXPECT_EQ(leader->address, "n1:1");
  EXPECT_EQ(leader->epoch, 5u);
  EXPECT_EQ(leader->instance_id, "n1-inst");
  EXPECT_EQ(registry_.ListNodes()[0].address(), "n1:1");
  // Restarts of the registered incarnation are the same node...
  auto restart = Beat("n1", {{0, true, 6}, {1, true, 6}});
  restart.mutable_instance()->set_start_count(2);
  restart.set_address("n1:2");
  ASSERT_OK(registry_.Heartbeat(restart));
  EXPECT_EQ(registry_.ResolveLeader(0)->epoch, 6u);
  // ...but an older start is not.
  EXPECT_THAT(registry_.Heartbeat(Beat("n1", {{0, true, 5}})),
              StatusIs(absl::StatusCode::kFailedPrecondition, "older"));
  // Once the registered one is dead, another incarnation takes over.
  clock_.Advance(absl::Seconds(11));
  ASSERT_OK(registry_.Heartbeat(impostor));
  EXPECT_EQ(registry_.ResolveLeader(1)->instance_id, "other");
  EXPECT_EQ(registry_.ResolveLeader(1)->epoch, 9u);
}

TEST_F(NodeRegistryTest, ForeignRepositoryIsRefused) {
  NodeRegistry::Options o;
  o.repository_id = "0123456789abcdef0123456789abcdef";
  o.repository = "/srv/repo";
  NodeRegistry registry(o, &clock_);
  auto beat = Beat("n1", {{0, true, 1}});
  beat.set_repository("/tmp/other");
  beat.set_repository_id("ffffffffffffffffffffffffffffffff");
  auto s = registry.Heartbeat(beat);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_NE(s.message().find("/tmp/other"), std::string::npos) << s;
  EXPECT_NE(s.message().find("/srv/repo"), std::string::npos) << s;
  beat.clear_repository_id();
  EXPECT_THAT(
      registry.Heartbeat(beat),
      StatusIs(absl::StatusCode::kFailedPrecondition, "no REPOSITORY_ID"));
  EXPECT_TRUE(registry.ListNodes().empty());
  beat.set_repository_id(o.repository_id);
  EXPECT_OK(registry.Heartbeat(beat));
}

TEST_F(NodeRegistryTest, PartitionIndexFollowsHeartbeats) {
  ASSERT_OK(registry_.Heartbeat(Beat("a", {{0, true, 1}, {1, true, 1}})));
  ASSERT_OK(registry_.Heartbeat(Beat("b", {{1, false, 0}, {2, true, 3}})));
  auto parts = registry_.ListPartitions();
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[1].replicas_size(), 2);
  // a drops 1 and takes 3; b takes 1 over at a higher epoch.
  ASSERT_OK(registry_.Heartbeat(Beat("a", {{0, true, 1}, {3, true, 1}})));
  ASSERT_OK(registry_.Heartbeat(Beat("b", {{1, true, 2}, {2, true, 3}})));
  parts = registry_.ListPartitions();
  ASSERT_EQ(parts.size(), 4u);
  EXPECT_EQ(parts[1].replicas_size(), 1);
  EXPECT_EQ(parts[1].leader_node_id(), "b");
  EXPECT_EQ(registry_.ResolveLeader(3)->node_id, "a");
  EXPECT_EQ(registry_.ResolveLeader(1)->epoch, 2u);
  // An empty report clears the node's partitions from the index.
  ASSERT_OK(registry_.Heartbeat(Beat("a", {})));
  parts = registry_.ListPartitions();
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].partition_id(), 1u);
  EXPECT_THAT(registry_.ResolveLeader(0),
              StatusIs(absl::StatusCode::kNotFound));
  // Many nodes, many partitions: every partition has exactly its reporters.
  for (int n = 0; n < 50; ++n) {
    std::vector<std::tuple<uint32_t, bool, uint64_t>> mine;
    for (uint32_t p = 0; p < 20; ++p)
      mine.emplace_back(100 + n * 20 + p, true, 1);
    ASSERT_OK(registry_.Heartbeat(Beat(absl::StrCat("n", n), mine)));
  }
  parts = registry_.ListPartitions();
  ASSERT_EQ(parts.size(), 2u + 1000u);
  for (const auto& p : parts) EXPECT_EQ(p.replicas_size(), 1);
  // Sorted by id (the index is hashed), and the ids alone say the same.
  const std::vector<uint32_t> ids = registry_.PartitionIds();
  ASSERT_EQ(ids.size(), parts.size());
  EXPECT_EQ(registry_.PartitionCount(), parts.size());
  for (size_t i = 0; i < parts.size(); ++i) {
    EXPECT_EQ(ids[i], parts[i].partition_id());
    if (i > 0) {
      EXPECT_LT(ids[i - 1], ids[i]);
    }
  }
}

TEST_F(NodeRegistryTest, KeepAlivesRefreshLivenessAndKeepTheLastReport) {
  auto keep_alive = [](HeartbeatRequest r) {
    r.clear_partitions();
    r.set_partitions_omitted(true);
    return r;
  };
  bool full = false;
  // Unknown node: a keep-alive is not enough, and records nothing.
  ASSERT_OK(registry_.Heartbeat(keep_alive(Beat("a", {{0, true, 1}})), &full));
  EXPECT_TRUE(full);
  EXPECT_TRUE(registry_.ListNodes().empty());
  ASSERT_OK(
      registry_.Heartbeat(Beat("a", {{0, true, 1}, {1, true, 1}}), &full));
  EXPECT_FALSE(full);
  for (int i = 0; i < 3; ++i) {
    clock_.Advance(absl::Seconds(6));
    ASSERT_OK(registry_.Heartbeat(keep_alive(Beat("a", {})), &full));
    EXPECT_FALSE(full);
  }
  // 18 s later, alive thanks to keep-alives, still with both partitions.
  EXPECT_TRUE(registry_.IsAlive("a"));
  EXPECT_EQ(registry_.ListPartitions().size(), 2u);
  EXPECT_EQ(registry_.ResolveLeader(1)->node_id, "a");
  // The node restarted (a higher start): it must report in full first.
  auto restarted = keep_alive(Beat("a", {}));
  restarted.mutable_instance()->set_start_count(2);
  ASSERT_OK(registry_.Heartbeat(restarted, &full));
  EXPECT_TRUE(full);
  // Another incarnation's keep-alive is refused like its full reports.
  auto other = keep_alive(Beat("a", {}));
  other.mutable_instance()->set_instance_id("other");
  EXPECT_THAT(registry_.Heartbeat(other, &full),
              StatusIs(absl::StatusCode::kAlreadyExists));
}

TEST_F(NodeRegistryTest, DeadNodesCanBeRemovedLiveOnesCannot) {
  ASSERT_OK(registry_.Heartbeat(Beat("a", {{0, true, 1}})));
  ASSERT_OK(registry_.Heartbeat(Beat("b", {{1, true, 1}})));
  EXPECT_THAT(registry_.RemoveNode("a"),
              StatusIs(absl::StatusCode::kFailedPrecondition, "alive"));
  EXPECT_THAT(registry_.RemoveNode("zz"),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(registry_.RemoveNode("../x"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  clock_.Advance(absl::Seconds(6));
  ASSERT_OK(registry_.Heartbeat(Beat("b", {{1, true, 1}})));
  clock_.Advance(absl::Seconds(6));
  auto removed = registry_.RemoveNode("a");
  ASSERT_OK(removed);
  EXPECT_FALSE(removed->alive());
  EXPECT_EQ(registry_.ListNodes().size(), 1u);
  EXPECT_EQ(registry_.ListPartitions().size(), 1u);  // partition 0 is gone
  // It may come back and register again.
  ASSERT_OK(registry_.Heartbeat(Beat("a", {{0, true, 2}})));
  EXPECT_EQ(registry_.ResolveLeader(0)->epoch, 2u);
}

TEST_F(NodeRegistryTest, ListsCountsAndCapacity) {
  ASSERT_OK(registry_.Heartbeat(Beat("a", {{1, true, 1}, {2, false, 0}}, 3)));
  auto nodes = registry_.ListNodes();
  ASSERT_EQ(nodes.size(), 1u);
  EXPECT_EQ(nodes[0].partitions_hosted(), 2u);
  EXPECT_EQ(nodes[0].partitions_led(), 1u);
  EXPECT_EQ(*registry_.Capacity("a"), 3u);
  EXPECT_THAT(registry_.Capacity("zz"), StatusIs(absl::StatusCode::kNotFound));
  // Whether the capacity changed is reported, so the controller touches
  // the scheduler's limits only then.
  bool full = false, changed = false;
  ASSERT_OK(registry_.Heartbeat(Beat("a", {{1, true, 1}}, 3), &full, &changed));
  EXPECT_FALSE(changed);
  ASSERT_OK(registry_.Heartbeat(Beat("a", {{1, true, 1}}, 5), &full, &changed));
  EXPECT_TRUE(changed);
  ASSERT_OK(registry_.Heartbeat(Beat("new", {}, 1), &full, &changed));
  EXPECT_TRUE(changed);
}

TEST_F(NodeRegistryTest, KeepsWhetherTheNodeQueuesCheckpoints) {
  bool changed = false;
  ASSERT_OK(
      registry_.Heartbeat(Beat("a", {{1, true, 1}}, 3), nullptr, &changed));
  EXPECT_TRUE(changed);  // new
  bool queues = true;
  auto cap = registry_.Capacity("a", &queues);
  ASSERT_OK(cap);
  EXPECT_EQ(*cap, 3u);
  EXPECT_FALSE(queues);  // a node that does not say so does not
  // Saying it, in a full report or a keep-alive, is a change.
  HeartbeatRequest b = Beat("a", {{1, true, 1}}, 3);
  b.set_queues_checkpoints(true);
  ASSERT_OK(registry_.Heartbeat(b, nullptr, &changed));
  EXPECT_TRUE(changed);
  ASSERT_OK(registry_.Capacity("a", &queues));
  EXPECT_TRUE(queues);
  b.clear_partitions();
  b.set_partitions_omitted(true);
  ASSERT_OK(registry_.Heartbeat(b, nullptr, &changed));
  EXPECT_FALSE(changed);
  b.set_queues_checkpoints(false);
  ASSERT_OK(registry_.Heartbeat(b, nullptr, &changed));
  EXPECT_TRUE(changed);
  ASSERT_OK(registry_.Capacity("a", &queues));
  EXPECT_FALSE(queues);
}

TEST_F(NodeRegistryTest, SaysWhenTheProcessAtTheAddressMayBeNew) {
  // The controller connects to a node when this is set (Membership), so
  // that the first job does not wait for the connection.
  auto keep_alive = [](HeartbeatRequest r) {
    r.clear_partitions();
    r.set_partitions_omitted(true);
    return r;
  };
  bool full = false, changed = false, registered = false;
  auto beat = [&](const HeartbeatRequest& r) {
    registered = true;  // each call must set it either way
    EXPECT_OK(registry_.Heartbeat(r, &full, &changed, &registered));
    return registered;
  };
  // Unknown: a keep-alive registers nothing.
  EXPECT_FALSE(beat(keep_alive(Beat("a", {{0, true, 1}}))));
  EXPECT_TRUE(beat(Beat("a", {{0, true, 1}})));  // new node
  EXPECT_FALSE(beat(keep_alive(Beat("a", {}))));
  EXPECT_FALSE(beat(Beat("a", {{0, true, 2}})));  // a full report, same process
  // The same process at a new address, by keep-alive or full report.
  HeartbeatRequest moved = Beat("a", {{0, true, 2}});
  moved.set_address("elsewhere:1");
  EXPECT_TRUE(beat(keep_alive(moved)));
  EXPECT_FALSE(beat(moved));
  moved.set_address("a:1");
  EXPECT_TRUE(beat(moved));
  // A restart (a higher start) reports in full, and is new.
  HeartbeatRequest restarted = Beat("a", {{0, true, 3}});
  restarted.mutable_instance()->set_start_count(2);
  EXPECT_FALSE(beat(keep_alive(restarted)));
  EXPECT_TRUE(full);
  EXPECT_TRUE(beat(restarted));
  // A refused heartbeat registers nothing.
  HeartbeatRequest other = Beat("a", {});
  other.mutable_instance()->set_instance_id("other");
  registered = true;
  EXPECT_FALSE(registry_.Heartbeat(other, &full, &changed, &registered).ok());
  EXPECT_FALSE(registered);
}

}  // namespace
}  // namespace shutter::controller
