// A controller and two nodes as objects in this process (as Kudu's
// MiniMaster runs a master), over real gRPC on loopback and real RocksDB:
// what the daemons' main()s do, without processes. The real-process tests
// (tests/integration) stay the reference; this one shows the objects
// start, work together and stop whole, which high availability needs.
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
#include "snapshot/repository.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter {
namespace {

TEST(InProcessTest, ControllerAndNodesAsObjectsTakeAndVerifyASnapshot) {
  testing::TempDir tmp;
  controller::ControllerOptions co;
  co.listen = "127.0.0.1:0";
  co.data_dir = tmp.Sub("controller");
  co.repository = tmp.Sub("repo");
  co.tls.insecure = true;
  co.heartbeat_interval_ms = 100;
  co.listener_check_ms = 0;
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

}  // namespace
}  // namespace shutter
