// Adaptive per-node limits with real daemons: nodes report their load with
// every heartbeat, `nodes list` shows it with each node's limit and why,
// operators pin limits (durably) through shutterctl, and a pinned limit is
// what the node sees during a snapshot.
#include <csignal>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "shutter/v1/admin.pb.h"
#include "testing/binaries.h"
#include "testing/local_cluster.h"
#include "testing/process.h"
#include "testing/shutterctl.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter {
namespace adaptive_test {

using shutter::v1::ListNodesResponse;
using shutter::v1::NodeInfo;
using testing::PollUntil;

constexpr int kNodes = 2;
constexpr int kPerNode = 4;
constexpr int kCapacity = 2;

class AdaptiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(cluster_.StartController({"--adaptive-limits", "true"}));
    ASSERT_OK(cluster_.StartAllNodes());
    ASSERT_OK(cluster_.WaitForLeaders(absl::Seconds(30)));
  }
  void TearDown() override {
    cluster_.CloseChannels();
    cluster_.StopAllNodes();
    cluster_.StopController(SIGTERM).IgnoreError();
  }

  int Ctl(std::vector<std::string> args, std::string* out, std::string* err) {
    return testing::RunShutterctl(cluster_, std::move(args), out, err,
                                  absl::Seconds(60));
  }

  // `nodes list -o json`, by node id.
  std::map<std::string, NodeInfo> Nodes() {
    std::string out, err;
    EXPECT_EQ(Ctl({"-o", "json", "nodes", "list"}, &out, &err), 0) << err;
    const auto resp = testing::FromJson<ListNodesResponse>(out);
    std::map<std::string, NodeInfo> by_id;
    for (const auto& n : resp.nodes()) by_id[n.node_id()] = n;
    return by_id;
  }

  testing::TempDir tmp_;
  testing::LocalCluster cluster_{{SHUTTER_CONTROLLER_BIN, SHUTTER_NODE_BIN,
                                  tmp_.path(), kNodes, kPerNode, kCapacity}};
};

TEST_F(AdaptiveTest, NodesReportLoadAndOperatorsPinLimits) {
  // Writes, so the nodes have foreground latency to report.
  ASSERT_OK(cluster_.LoadRandom(64, 256, 8));
  // Every node's load arrives with its heartbeats.
  bool reported = PollUntil(
      [&] {
        for (const auto& [id, n] : Nodes()) {
          if (!n.has_load() || n.load().interval_millis() <= 0) return false;
        }
        return true;
      },
      absl::Seconds(30));
  ASSERT_TRUE(reported);
  for (const auto& [id, n] : Nodes()) {
    EXPECT_LE(n.load().cpu_busy(), 1.0) << id;
    EXPECT_GE(n.load().cpu_busy(), -1.0) << id;
    EXPECT_LE(n.load().disk_busy(), 1.0) << id;
    EXPECT_GE(n.effective_limit(), 1u) << id;
    EXPECT_LE(n.effective_limit(), n.checkpoint_capacity()) << id;
    EXPECT_FALSE(n.limit_reason().empty()) << id;
    EXPECT_EQ(n.pinned_limit(), 0u) << id;
  }
  // The table shows them too.
  std::string out, err;
  ASSERT_EQ(Ctl({"nodes", "list"}, &out, &err), 0) << err;
  EXPECT_NE(out.find("LIMIT REASON"), std::string::npos) << out;
  EXPECT_NE(out.find("WRITE P99"), std::string::npos) << out;

  // Bad pins are refused with a reason and change nothing.
  EXPECT_EQ(Ctl({"nodes", "set-limit", "n1", "3"}, &out, &err), 1);
  EXPECT_NE(err.find("capacity of 2"), std::string::npos) << err;
  EXPECT_EQ(Ctl({"nodes", "set-limit", "n9", "1"}, &out, &err), 1);
  EXPECT_NE(err.find("no node 'n9'"), std::string::npos) << err;
  EXPECT_EQ(Ctl({"nodes", "set-limit", "n1", "zero"}, &out, &err), 2);
  EXPECT_NE(err.find("'auto'"), std::string::npos) << err;
  EXPECT_EQ(Nodes()["n1"].pinned_limit(), 0u);

  // Pin n1 to one slot.
  ASSERT_EQ(Ctl({"nodes", "set-limit", "n1", "1"}, &out, &err), 0) << err;
  EXPECT_NE(out.find("node n1: limit 1 of capacity 2 (pinned by an operator)"),
            std::string::npos)
      << out;
  NodeInfo n1 = Nodes()["n1"];
  EXPECT_EQ(n1.pinned_limit(), 1u);
  EXPECT_EQ(n1.effective_limit(), 1u);
  EXPECT_EQ(n1.limit_reason(), "pinned by an operator");
  // The node hears the limit with its next heartbeat's answer and holds
  // to it (HeartbeatResponse.checkpoint_limit).
  ASSERT_TRUE(PollUntil(
      [&] {
        auto st = cluster_.NodeStats(0);
        return st.ok() && st->checkpoint_limit() == 1u;
      },
      absl::Seconds(30)));

  // A snapshot: n1 never runs more than one checkpoint at once. (n2 may
  // run two; whether it does depends on timing, so it is not asserted.)
  auto id = cluster_.CreateSnapshot();
  ASSERT_OK(id);
  auto snap = cluster_.WaitForSnapshot(*id, absl::Seconds(60));
  ASSERT_OK(snap);
  EXPECT_EQ(snap->state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
  auto stats = cluster_.NodeStats(0);
  ASSERT_OK(stats);
  EXPECT_EQ(stats->node_id(), "n1");
  // Below the capacity nothing is sent ahead: one at the node at a time.
  EXPECT_EQ(stats->peak_checkpoints_in_flight(), 1u);
  EXPECT_EQ(stats->peak_checkpoints_running(), 1u);
  EXPECT_EQ(stats->checkpoints_published(), static_cast<uint64_t>(kPerNode));

  // The pin survives a controller restart.
  ASSERT_OK(cluster_.StopController(SIGTERM).status());
  cluster_.CloseChannels();
  ASSERT_OK(cluster_.StartController({"--adaptive-limits", "true"}));
  ASSERT_OK(cluster_.WaitForLeaders(absl::Seconds(30)));
  n1 = Nodes()["n1"];
  EXPECT_EQ(n1.pinned_limit(), 1u);
  EXPECT_EQ(n1.effective_limit(), 1u);

  // Unpinned: the rule (or the capacity) decides again.
  ASSERT_EQ(Ctl({"nodes", "set-limit", "n1", "auto"}, &out, &err), 0) << err;
  n1 = Nodes()["n1"];
  EXPECT_EQ(n1.pinned_limit(), 0u);
  EXPECT_NE(n1.limit_reason(), "pinned by an operator");
}

}  // namespace adaptive_test
}  // namespace shutter
