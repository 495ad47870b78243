// A controller and two nodes as objects in this process (as Kudu's
// MiniMaster runs a master), over real gRPC on loopback and real RocksDB:
// what the daemons' main()s do, without processes. The real-process tests
// (tests/integration) stay the reference; this one shows the objects
// start, work together and stop whole, which high availability needs.
#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/rpc.h"
#include "controller/controller.h"
#include "controller/job_states.h"
#include "gtest/gtest.h"
#include "node/node.h"
#include "shutter/v1/admin.grpc.pb.h"
#include "shutter/v1/node.grpc.pb.h"
#include "snapshot/repository.h"
#include "testing/process.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter {
namespace {

// A controller on an ephemeral loopback port with its data and repository
// under `tmp`, insecure, heartbeats every 100 ms.
controller::ControllerOptions TestControllerOptions(
    const testing::TempDir& tmp) {
  controller::ControllerOptions co;
  co.listen = "127.0.0.1:0";
  co.data_dir = tmp.Sub("controller");
  co.repository = tmp.Sub("repo");
  co.tls.insecure = true;
  co.heartbeat_interval_ms = 100;
  co.listener_check_ms = 0;
  return co;
}

TEST(InProcessTest, ControllerAndNodesAsObjectsTakeAndVerifyASnapshot) {
  testing::TempDir tmp;
  controller::ControllerOptions co = TestControllerOptions(tmp);
  auto controller = std::make_unique<controller::Controller>(co);
  ASSERT_OK(controller->Start());
  ASSERT_GT(controller->port(), 0);
  const std::string address = absl::StrCat("127.0.0.1:", controller->port());

  std::vector<std::unique_ptr<node::Node>> nodes;
  for (int i = 0; i < 2; ++i) {
    node::NodeOptions no;
    no.node_id = absl::StrCat("n", i);
    no.listen = "127.0.0.1:0";
    no.controller = address;
    no.data_dir = tmp.Sub(absl::StrCat("node", i));
    no.repository = co.repository;
    no.partitions = {static_cast<uint32_t>(2 * i),
                     static_cast<uint32_t>(2 * i + 1)};
    no.leader_for = {no.partitions.begin(), no.partitions.end()};
    no.tls.insecure = true;
    no.heartbeat_interval_ms = 100;
    no.listener_check_ms = 0;
    no.min_free_mib = 0;
    nodes.push_back(std::make_unique<node::Node>(no));
    ASSERT_OK(nodes.back()->Start());
  }

  auto admin = shutter::v1::AdminService::NewStub(MakeChannel(address));
  auto call = [&](auto method, const auto& req, auto* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    return ((*admin).*method)(&ctx, req, resp);
  };
  // Every partition gets a leader (heartbeats every 100 ms).
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  for (;;) {
    shutter::v1::ListPartitionsResponse parts;
    ASSERT_TRUE(call(&shutter::v1::AdminService::Stub::ListPartitions,
                     shutter::v1::ListPartitionsRequest(), &parts)
                    .ok());
    int led = 0;
    for (const auto& p : parts.partitions()) led += !p.leader_node_id().empty();
    if (led == 4) break;
    ASSERT_LT(absl::Now(), deadline) << "no leaders after 30 s";
    absl::SleepFor(absl::Milliseconds(20));
  }
  // A snapshot, then a deep verify of it, each waited for (bounded).
  auto wait = [&](const std::string& id) {
    shutter::v1::GetSnapshotRequest req;
    req.set_snapshot_id(id);
    req.set_summary_only(true);
    shutter::v1::GetSnapshotResponse resp;
    const absl::Time until = absl::Now() + absl::Seconds(60);
    for (;;) {
      EXPECT_TRUE(
          call(&shutter::v1::AdminService::Stub::GetSnapshot, req, &resp).ok());
      if (controller::IsFinished(resp.snapshot().state()) ||
          absl::Now() > until) {
        return resp.snapshot();
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  };
  shutter::v1::CreateSnapshotResponse created;
  ASSERT_TRUE(call(&shutter::v1::AdminService::Stub::CreateSnapshot,
                   shutter::v1::CreateSnapshotRequest(), &created)
                  .ok());
  shutter::v1::Snapshot snap = wait(created.snapshot_id());
  EXPECT_EQ(snap.state(), shutter::v1::SNAPSHOT_STATE_COMMITTED)
      << snap.error();
  shutter::v1::VerifySnapshotRequest vreq;
  vreq.set_snapshot_id(created.snapshot_id());
  vreq.set_deep(true);
  shutter::v1::VerifySnapshotResponse vresp;
  ASSERT_TRUE(
      call(&shutter::v1::AdminService::Stub::VerifySnapshot, vreq, &vresp)
          .ok());
  shutter::v1::Snapshot verify = wait(vresp.verify_id());
  EXPECT_EQ(verify.state(), shutter::v1::SNAPSHOT_STATE_COMMITTED)
      << verify.error();
  auto repo = snapshot::OpenRepository(co.repository);
  ASSERT_OK(repo);
  auto cm = (*repo)->ReadClusterManifest(created.snapshot_id());
  ASSERT_OK(cm);
  EXPECT_EQ(cm->partitions_size(), 4);

  // Stopped whole, nodes first (as at a rolling shutdown), then started
  // again on the same state: the job is still there.
  for (auto& n : nodes) n->Shutdown();
  controller->Shutdown();
  controller = std::make_unique<controller::Controller>(co);
  ASSERT_OK(controller->Start());
  admin = shutter::v1::AdminService::NewStub(
      MakeChannel(absl::StrCat("127.0.0.1:", controller->port())));
  EXPECT_EQ(wait(created.snapshot_id()).state(),
            shutter::v1::SNAPSHOT_STATE_COMMITTED);
  controller->Shutdown();
}

// A controller and one node of capacity 1 hosting and leading partitions
// 0-3, as objects in this process, with a hook run as each checkpoint
// starts on the node.
class OneSlotCluster {
 public:
  OneSlotCluster(bool queue_at_nodes, std::function<void(uint32_t)> hook)
      : co_(TestControllerOptions(tmp_)) {
    co_.adaptive_limits = false;  // the limit stays at the capacity
    co_.queue_at_nodes = queue_at_nodes;
    no_.node_id = "n0";
    no_.listen = "127.0.0.1:0";
    no_.data_dir = tmp_.Sub("node0");
    no_.repository = co_.repository;
    no_.partitions = {0, 1, 2, 3};
    no_.leader_for = {0, 1, 2, 3};
    no_.checkpoint_capacity = 1;
    no_.tls.insecure = true;
    no_.heartbeat_interval_ms = 100;
    no_.listener_check_ms = 0;
    no_.min_free_mib = 0;
    no_.enable_data_plane = true;  // SetPartitionRole, a test hook
    no_.test_before_checkpoint = std::move(hook);
  }
  ~OneSlotCluster() {
    if (node_) node_->Shutdown();
    if (controller_) controller_->Shutdown();
  }

  absl::Status Start() {
    controller_ = std::make_unique<controller::Controller>(co_);
    if (absl::Status s = controller_->Start(); !s.ok()) return s;
    const std::string address = absl::StrCat("127.0.0.1:", controller_->port());
    admin_ = shutter::v1::AdminService::NewStub(MakeChannel(address));
    no_.controller = address;
    node_ = std::make_unique<node::Node>(no_);
    if (absl::Status s = node_->Start(); !s.ok()) return s;
    node_stub_ = shutter::v1::NodeService::NewStub(
        MakeChannel(absl::StrCat("127.0.0.1:", node_->port())));
    return absl::OkStatus();
  }
  shutter::v1::AdminService::Stub& admin() { return *admin_; }
  shutter::v1::NodeService::Stub& node() { return *node_stub_; }

  static std::chrono::system_clock::time_point In(int seconds) {
    return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
  }

  // Waits (bounded) until the controller sees a leader for `n` partitions.
  bool WaitForLeaders(int n) {
    return testing::PollUntil(
        [&] {
          grpc::ClientContext ctx;
          ctx.set_deadline(In(10));
          shutter::v1::ListPartitionsResponse parts;
          if (!admin_
                   ->ListPartitions(&ctx, shutter::v1::ListPartitionsRequest(),
                                    &parts)
                   .ok()) {
            return false;
          }
          int led = 0;
          for (const auto& p : parts.partitions()) {
            led += !p.leader_node_id().empty();
          }
          return led == n;
        },
        absl::Seconds(30));
  }

  absl::StatusOr<std::string> CreateSnapshot() {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(10));
    shutter::v1::CreateSnapshotResponse created;
    grpc::Status s = admin_->CreateSnapshot(
        &ctx, shutter::v1::CreateSnapshotRequest(), &created);
    if (!s.ok()) return absl::UnknownError(s.error_message());
    return created.snapshot_id();
  }

  // The job once finished (bounded wait), with its tasks.
  absl::StatusOr<shutter::v1::Snapshot> WaitFinished(const std::string& id) {
    shutter::v1::GetSnapshotResponse got;
    const bool finished = testing::PollUntil(
        [&] {
          grpc::ClientContext ctx;
          ctx.set_deadline(In(10));
          shutter::v1::GetSnapshotRequest req;
          req.set_snapshot_id(id);
          return admin_->GetSnapshot(&ctx, req, &got).ok() &&
                 controller::IsFinished(got.snapshot().state());
        },
        absl::Seconds(60));
    if (!finished) {
      return absl::DeadlineExceededError("the snapshot did not finish");
    }
    return got.snapshot();
  }

  absl::StatusOr<shutter::v1::GetNodeStatsResponse> NodeStats() {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(5));
    shutter::v1::GetNodeStatsResponse st;
    grpc::Status s =
        node_stub_->GetNodeStats(&ctx, shutter::v1::GetNodeStatsRequest(), &st);
    if (!s.ok()) return absl::UnknownError(s.error_message());
    return st;
  }

  absl::Status SetRole(uint32_t partition, bool leader, uint64_t min_epoch) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(10));
    shutter::v1::SetPartitionRoleRequest req;
    req.set_partition_id(partition);
    req.set_role(leader ? shutter::v1::PARTITION_ROLE_LEADER
                        : shutter::v1::PARTITION_ROLE_FOLLOWER);
    req.set_min_epoch(min_epoch);
    shutter::v1::SetPartitionRoleResponse resp;
    grpc::Status s = node_stub_->SetPartitionRole(&ctx, req, &resp);
    if (!s.ok()) return absl::UnknownError(s.error_message());
    return absl::OkStatus();
  }

  // Waits (bounded) until the node holds `n` checkpoint requests.
  bool WaitInFlightAtNode(uint32_t n) {
    return testing::PollUntil(
        [&] {
          auto st = NodeStats();
          return st.ok() && st->checkpoints_in_flight() >= n;
        },
        absl::Seconds(20));
  }

 private:
  testing::TempDir tmp_;
  controller::ControllerOptions co_;
  node::NodeOptions no_;
  std::unique_ptr<controller::Controller> controller_;
  std::unique_ptr<node::Node> node_;
  std::unique_ptr<shutter::v1::AdminService::Stub> admin_;
  std::unique_ptr<shutter::v1::NodeService::Stub> node_stub_;
};

// What a node that queues checkpoints is sent: with --queue-at-nodes (the
// default) a second round ahead of its free slots, held at the node and
// never run past its capacity; without it, one request per slot.
class QueueAtNodesTest : public ::testing::TestWithParam<bool> {};

TEST_P(QueueAtNodesTest, ANodeHoldsTheRoundSentAheadAndRunsItsCapacity) {
  const bool queue_at_nodes = GetParam();
  // The first checkpoint to run waits (bounded) until the node holds a
  // second request, and records what the node and the controller say
  // meanwhile. Without queueing at nodes it does not wait.
  std::atomic<bool> first{true};
  std::atomic<uint32_t> held_in_flight{0}, held_running{0}, sent_ahead{0};
  OneSlotCluster* cluster = nullptr;
  OneSlotCluster c(queue_at_nodes, [&](uint32_t) {
    if (!queue_at_nodes || !first.exchange(false)) return;
    if (!cluster->WaitInFlightAtNode(2)) return;
    auto st = cluster->NodeStats();
    if (st.ok()) {
      held_in_flight = st->checkpoints_in_flight();
      held_running = st->checkpoints_running();
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(OneSlotCluster::In(5));
    shutter::v1::ListNodesResponse nodes;
    if (cluster->admin()
            .ListNodes(&ctx, shutter::v1::ListNodesRequest(), &nodes)
            .ok() &&
        nodes.nodes_size() == 1) {
      sent_ahead = nodes.nodes(0).checkpoints_sent_ahead();
    }
  });
  cluster = &c;
  ASSERT_OK(c.Start());
  ASSERT_TRUE(c.WaitForLeaders(4));
  auto id = c.CreateSnapshot();
  ASSERT_OK(id);
  auto snap = c.WaitFinished(*id);
  ASSERT_OK(snap);
  EXPECT_EQ(snap->state(), shutter::v1::SNAPSHOT_STATE_COMMITTED)
      << snap->error();
  auto st = c.NodeStats();
  ASSERT_OK(st);
  EXPECT_EQ(st->checkpoints_published(), 4u);
  // Never more running than the capacity, whatever was sent.
  EXPECT_EQ(st->peak_checkpoints_running(), 1u);
  if (queue_at_nodes) {
    // One slot, one request ahead of it: two at the node, one running,
    // and the controller counting one sent ahead.
    EXPECT_EQ(held_in_flight.load(), 2u);
    EXPECT_EQ(held_running.load(), 1u);
    EXPECT_EQ(sent_ahead.load(), 1u);
    EXPECT_EQ(st->peak_checkpoints_in_flight(), 2u);
  } else {
    EXPECT_EQ(st->peak_checkpoints_in_flight(), 1u);
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, QueueAtNodesTest, ::testing::Bool(),
                         [](const auto& info) {
                           return info.param ? std::string("queued")
                                             : std::string("one_per_slot");
                         });

// A request sent ahead waits at its node while leadership moves: when its
// turn comes it is refused (nothing published at the old epoch), and the
// partition is checkpointed again at its new epoch.
TEST(SentAheadTest, ARequestWaitingAtTheNodeIsRefusedAfterLeadershipMoves) {
  std::atomic<bool> first{true};
  std::atomic<int> running_partition{-1};
  std::atomic<bool> stepped_down{false};
  OneSlotCluster* cluster = nullptr;
  OneSlotCluster c(/*queue_at_nodes=*/true, [&](uint32_t partition) {
    if (!first.exchange(false)) return;
    running_partition = static_cast<int>(partition);
    // A second request is at the node, behind this one: every other
    // partition steps down (the one waiting among them).
    if (!cluster->WaitInFlightAtNode(2)) return;
    bool ok = true;
    for (uint32_t p = 0; p < 4; ++p) {
      if (p != partition) ok = ok && cluster->SetRole(p, false, 0).ok();
    }
    stepped_down = ok;
  });
  cluster = &c;
  ASSERT_OK(c.Start());
  ASSERT_TRUE(c.WaitForLeaders(4));
  auto id = c.CreateSnapshot();
  ASSERT_OK(id);
  // The request that waited is refused when its turn comes (the node's
  // runner counts it failed); then the partitions lead again, at epoch 2.
  absl::StatusOr<shutter::v1::GetNodeStatsResponse> st;
  ASSERT_TRUE(testing::PollUntil(
      [&] {
        st = c.NodeStats();
        return stepped_down && st.ok() && st->checkpoints_failed() >= 1;
      },
      absl::Seconds(30)))
      << "the waiting request was not refused: stepped down "
      << stepped_down.load() << ", node stats "
      << (st.ok() ? st->ShortDebugString() : st.status().ToString());
  for (uint32_t p = 0; p < 4; ++p) {
    if (static_cast<int>(p) != running_partition) {
      ASSERT_OK(c.SetRole(p, true, /*min_epoch=*/2));
    }
  }
  auto snap = c.WaitFinished(*id);
  ASSERT_OK(snap);
  ASSERT_EQ(snap->state(), shutter::v1::SNAPSHOT_STATE_COMMITTED)
      << snap->error();
  for (const auto& t : snap->partitions()) {
    const bool moved = static_cast<int>(t.partition_id()) != running_partition;
    EXPECT_EQ(t.leader_epoch(), moved ? 2u : 1u) << t.partition_id();
  }
  st = c.NodeStats();
  ASSERT_OK(st);
  EXPECT_EQ(st->peak_checkpoints_running(), 1u);
  EXPECT_EQ(st->checkpoints_published(), 4u);
}

}  // namespace
}  // namespace shutter
