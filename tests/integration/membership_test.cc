// Node identity and membership with real processes on loopback: a second
// process claiming a live node's id, a node pointed at another repository,
// a start that fails on a busy port, removing a node that left, and a
// rolling restart of every node while a snapshot runs.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/fs.h"
#include "gtest/gtest.h"
#include "snapshot/repository.h"
#include "testing/binaries.h"
#include "testing/local_cluster.h"
#include "testing/process.h"
#include "testing/shutterctl.h"
#include "testing/snapshot_checks.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter {
namespace membership_test {

using namespace shutter::v1;  // NOLINT
using testing::PollUntil;
using testing::RunCommand;
namespace stdfs = std::filesystem;

class MembershipTest : public ::testing::Test {
 protected:
  void Start(int nodes, int per_node, std::vector<std::string> node_flags = {},
             int dead_after_ms = 5000, int capacity = 2) {
    cluster_ = std::make_unique<testing::LocalCluster>(
        testing::LocalCluster::Options{SHUTTER_CONTROLLER_BIN, SHUTTER_NODE_BIN,
                                       tmp_.path(), nodes, per_node, capacity,
                                       /*heartbeat_ms=*/100, dead_after_ms});
    ASSERT_OK(cluster_->StartController());
    ASSERT_OK(cluster_->StartAllNodes(node_flags));
    ASSERT_OK(cluster_->WaitForLeaders(absl::Seconds(30)));
  }

  void TearDown() override {
    if (cluster_) {
      cluster_->StopAllNodes();
      cluster_->StopController(SIGTERM).IgnoreError();
    }
    if (HasFailure()) {
      for (const auto& e : stdfs::directory_iterator(tmp_.path())) {
        if (e.path().extension() == ".log") {
          std::string cmd = "tail -n 20 " + e.path().string();
          std::system(cmd.c_str());
        }
      }
    }
  }

  // Runs shutterctl; returns the exit code.
  int Ctl(std::vector<std::string> args, std::string* out, std::string* err) {
    return testing::RunShutterctl(*cluster_, std::move(args), out, err);
  }

  // Runs a shutter-node to completion (it is expected to exit by itself).
  int RunNode(std::vector<std::string> args, std::string* err) {
    args.insert(args.begin(), {SHUTTER_NODE_BIN, "--insecure"});
    std::string out;
    auto rc = RunCommand(args, &out, err, absl::Seconds(30));
    EXPECT_OK(rc);
    return rc.ok() ? *rc : -1;
  }

  // Writes `keys` keys of `value_size` random (incompressible) bytes into
  // partition p.
  void WriteRandom(int p, int keys, int value_size, std::mt19937_64& rng) {
    std::vector<std::pair<std::string, std::string>> kvs;
    for (int k = 0; k < keys; ++k) {
      kvs.emplace_back(absl::StrFormat("key-%05d", k),
                       testing::LocalCluster::RandomValue(rng, value_size));
    }
    ASSERT_OK(cluster_->Write(p, kvs));
  }

  // Starts `shutterctl snapshots create --wait` as an operator would, its
  // output to `log`.
  void StartWaitingCreate(testing::Subprocess* wait, const std::string& log) {
    ASSERT_OK(
        wait->Start({SHUTTERCTL_BIN, "snapshots", "create", "--wait"}, log,
                    {"SHUTTER_CONTROLLER=" + cluster_->controller_address()}));
  }

  // True once the file `log` holds `text`, false after 30 s.
  static bool LogShows(const std::string& log, absl::string_view text) {
    return PollUntil(
        [&] { return absl::StrContains(testing::ReadFileOrEmpty(log), text); },
        absl::Seconds(30));
  }

  ListNodesResponse ListNodes() {
    grpc::ClientContext ctx;
    ListNodesResponse resp;
    EXPECT_TRUE(
        cluster_->admin()->ListNodes(&ctx, ListNodesRequest(), &resp).ok());
    return resp;
  }

  std::map<uint32_t, uint64_t> Epochs() {
    std::map<uint32_t, uint64_t> out;
    const ListPartitionsResponse parts = cluster_->ListPartitions();
    for (const auto& p : parts.partitions()) {
      out[p.partition_id()] = p.leader_epoch();
    }
    return out;
  }

  testing::TempDir tmp_;
  std::unique_ptr<testing::LocalCluster> cluster_;
};

// A second process started as n1 with a fresh data directory while the
// real n1 is alive is refused and exits 2; the snapshot taken afterwards
// holds the real n1's data, not the impostor's empty stores.
TEST_F(MembershipTest, ImpostorIsRefusedAndTheSnapshotHoldsTheRealData) {
  Start(2, 4);
  for (uint32_t p = 0; p < 4; ++p) {
    for (int b = 0; b < 3; ++b) {
      ASSERT_OK(cluster_->Write(p, {{absl::StrCat("k", b), "v"}}));
    }
  }
  const std::string real_address = cluster_->node_address(0);
  std::string err;
  int rc = RunNode({"--node-id", "n1", "--partitions", "0-3", "--data-dir",
                    tmp_.Sub("impostor"), "--repository", cluster_->repo_dir(),
                    "--controller", cluster_->controller_address(), "--listen",
                    "127.0.0.1:0", "--log-level", "error"},
                   &err);
  EXPECT_EQ(rc, 2) << err;
  EXPECT_NE(err.find("refused"), std::string::npos) << err;
  EXPECT_NE(err.find(real_address), std::string::npos) << err;
  EXPECT_NE(err.find("in use"), std::string::npos) << err;
  // The registry still points at the real n1, and keeps doing so.
  for (int i = 0; i < 5; ++i) {
    auto nodes = ListNodes();
    ASSERT_EQ(nodes.nodes_size(), 2);
    EXPECT_EQ(nodes.nodes(0).address(), real_address);
  }
  CreateSnapshotRequest req;
  for (uint32_t p = 0; p < 8; ++p) req.add_partition_ids(p);
  auto id = cluster_->CreateSnapshot(req);
  ASSERT_OK(id);
  auto snap = cluster_->WaitForSnapshot(*id, absl::Seconds(60));
  ASSERT_OK(snap);
  ASSERT_EQ(snap->state(), SNAPSHOT_STATE_COMMITTED) << snap->error();
  auto repo = cluster_->OpenRepository();
  ASSERT_OK(repo);
  for (uint32_t p = 0; p < 4; ++p) {
    SCOPED_TRACE(absl::StrCat("partition ", p));
    auto pub = testing::CheckPublishedPartition(**repo, *id, p);
    ASSERT_NE(pub.checkpoint, nullptr);
    EXPECT_EQ(pub.manifest.applied_index(), 3u);
    EXPECT_EQ(*pub.checkpoint->CountKeys(), 3u);
  }
  // The controller logged the refusal, naming both addresses.
  auto log = fs::ReadFile(tmp_.Sub("controller.log"));
  ASSERT_OK(log);
  EXPECT_TRUE(absl::StrContains(*log, "refused heartbeat")) << *log;
}

// A disk replacement: the node is stopped cleanly, its data directory is
// wiped and it starts again as a new incarnation of the same node id. It
// told the controller it was leaving, so the new incarnation is accepted
// at once -- no exit 2, no wait for --node-dead-after-ms.
TEST_F(MembershipTest, ReplacedDiskAfterACleanStopIsAcceptedAtOnce) {
  Start(1, 2, {}, /*dead_after_ms=*/60000);
  const std::string old_instance = ListNodes().nodes(0).instance_id();
  ASSERT_OK(cluster_->StopNode(0, SIGTERM));
  stdfs::remove_all(cluster_->node_dir(0));
  ASSERT_OK(cluster_->StartNode(0));
  // Well before the 60 s after which the old incarnation would be dead.
  ASSERT_OK(cluster_->WaitForLeaders(absl::Seconds(20)));
  auto nodes = ListNodes();
  ASSERT_EQ(nodes.nodes_size(), 1);
  EXPECT_NE(nodes.nodes(0).instance_id(), old_instance);
  EXPECT_TRUE(nodes.nodes(0).alive());
  auto log = fs::ReadFile(tmp_.Sub("controller.log"));
  ASSERT_OK(log);
  EXPECT_TRUE(absl::StrContains(*log, "is leaving: released")) << *log;
}

// A node that crashed (no goodbye) and comes back with a new data
// directory: its old incarnation is silent but not yet dead. The new one
// waits and retries, with a log line saying why, instead of exiting 2
// (under the shipped unit, RestartPreventExitStatus=2 would keep it down).
TEST_F(MembershipTest, CrashedNodesNewIncarnationWaitsInsteadOfExiting) {
  // Dead after 8 s: room for a slow (sanitized, loaded) start to register
  // while the old incarnation is silent but not yet dead.
  Start(1, 2, {}, /*dead_after_ms=*/8000);
  const std::string old_instance = ListNodes().nodes(0).instance_id();
  ASSERT_OK(cluster_->StopNode(0, SIGKILL));
  stdfs::remove_all(cluster_->node_dir(0));
  // A machine or disk replacement takes longer than three heartbeats
  // (within those, a new incarnation is still taken for a second process).
  ASSERT_TRUE(PollUntil(
      [&] {
        auto n = ListNodes();
        return n.nodes_size() == 1 && n.nodes(0).millis_since_heartbeat() > 500;
      },
      absl::Seconds(10)));
  ASSERT_OK(cluster_->StartNode(0));
  ASSERT_OK(cluster_->WaitForLeaders(absl::Seconds(30), [&](const auto&) {
    auto n = ListNodes();
    return n.nodes_size() == 1 && n.nodes(0).instance_id() != old_instance &&
           n.nodes(0).alive();
  }));
  auto log = fs::ReadFile(tmp_.Sub("node0.log"));
  ASSERT_OK(log);
  EXPECT_TRUE(absl::StrContains(*log,
                                "is accepted once that one has been "
                                "silent"))
      << *log;
}

// Restarting with the same data directory is the same node, even on
// another port; the incarnation survives, the start count grows.
TEST_F(MembershipTest, RestartWithTheSameDataDirectoryIsTheSameNode) {
  Start(1, 2);
  auto before = ListNodes().nodes(0);
  ASSERT_OK(cluster_->StopNode(0, SIGTERM));
  ASSERT_OK(cluster_->StartNode(0));
  ASSERT_OK(cluster_->WaitForLeaders(absl::Seconds(30), [](const auto& r) {
    return r.partitions(0).leader_epoch() == 2;
  }));
  auto after = ListNodes().nodes(0);
  EXPECT_EQ(after.instance_id(), before.instance_id());
  EXPECT_EQ(after.start_count(), before.start_count() + 1);
  EXPECT_EQ(after.address(), cluster_->node_address(0));
  // A data directory belongs to one node id (checked once no node runs on
  // it: while one does, its lock refuses any other, cluster_test).
  ASSERT_OK(cluster_->StopNode(0, SIGTERM));
  std::string err;
  EXPECT_EQ(RunNode({"--node-id", "n9", "--partitions", "0", "--data-dir",
                     cluster_->node_dir(0), "--repository",
                     cluster_->repo_dir(), "--listen", "127.0.0.1:0"},
                    &err),
            2);
  EXPECT_NE(err.find("belongs to node \"n1\""), std::string::npos) << err;
}

// A node whose --repository is not the controller's is refused at start,
// with both locations named, and writes nothing anywhere.
TEST_F(MembershipTest, NodeWithAnotherRepositoryIsRefusedAtStart) {
  Start(1, 1);
  std::string err;
  const std::string missing = tmp_.Sub("no-such-repo");
  EXPECT_EQ(RunNode({"--node-id", "n7", "--partitions", "7", "--data-dir",
                     tmp_.Sub("n7"), "--repository", missing, "--controller",
                     cluster_->controller_address(), "--listen", "127.0.0.1:0"},
                    &err),
            2);
  EXPECT_NE(err.find(missing), std::string::npos) << err;
  EXPECT_NE(err.find(cluster_->repo_dir()), std::string::npos) << err;
  EXPECT_FALSE(stdfs::exists(missing)) << "the node created a repository";
  // Another real repository (its own identity) is refused the same way.
  const std::string other = tmp_.Sub("other-repo");
  ASSERT_OK(snapshot::OpenRepository(other));
  EXPECT_EQ(RunNode({"--node-id", "n7", "--partitions", "7", "--data-dir",
                     tmp_.Sub("n7"), "--repository", other, "--controller",
                     cluster_->controller_address(), "--listen", "127.0.0.1:0"},
                    &err),
            2);
  EXPECT_NE(err.find("with id"), std::string::npos) << err;
  EXPECT_EQ(ListNodes().nodes_size(), 1);
  auto other_repo = snapshot::OpenRepository(other);
  ASSERT_OK(other_repo);
  EXPECT_TRUE(testing::SnapshotObjects(**other_repo).empty());
}

// A start that fails because the port is busy changes nothing durable:
// the partitions' epochs are raised once per successful start only.
TEST_F(MembershipTest, FailedStartOnABusyPortKeepsEpochs) {
  Start(1, 2);
  EXPECT_EQ(Epochs()[0], 1u);
  ASSERT_OK(cluster_->StopNode(0, SIGTERM));
  // Something else holds the port the node is told to use.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string busy = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
  for (int i = 0; i < 3; ++i) {
    std::string err;
    EXPECT_EQ(RunNode({"--node-id", "n1", "--partitions", "0-1", "--data-dir",
                       cluster_->node_dir(0), "--repository",
                       cluster_->repo_dir(), "--controller",
                       cluster_->controller_address(), "--listen", busy},
                      &err),
              2);
    EXPECT_NE(err.find("already in use"), std::string::npos) << err;
  }
  close(fd);
  ASSERT_OK(cluster_->StartNode(0));
  ASSERT_OK(cluster_->WaitForLeaders(absl::Seconds(30), [](const auto& r) {
    return r.partitions(0).leader_epoch() >= 2;
  }));
  EXPECT_EQ(Epochs()[0], 2u);  // not 5
  EXPECT_EQ(Epochs()[1], 2u);
}

// A node that left for good: its partitions block all-partition snapshots
// (every one is listed) until an operator removes it; a live node cannot
// be removed.
TEST_F(MembershipTest, RemovingANodeThatLeftUnblocksSnapshots) {
  Start(3, 2, {}, /*dead_after_ms=*/1000);
  ASSERT_OK(cluster_->StopNode(2, SIGKILL));
  ASSERT_TRUE(PollUntil(
      [&] {
        auto nodes = ListNodes();
        return nodes.nodes_size() == 3 && !nodes.nodes(2).alive();
      },
      absl::Seconds(30)));
  std::string out, err;
  EXPECT_EQ(Ctl({"snapshots", "create"}, &out, &err), 1);
  EXPECT_NE(err.find("2 of 6 partitions have no usable leader: 4-5"),
            std::string::npos)
      << err;
  EXPECT_EQ(Ctl({"nodes", "remove", "n1"}, &out, &err), 1);
  EXPECT_NE(err.find("alive"), std::string::npos) << err;
  EXPECT_EQ(Ctl({"nodes", "remove", "../n3"}, &out, &err), 1);
  EXPECT_NE(err.find("INVALID_ARGUMENT"), std::string::npos) << err;
  ASSERT_EQ(Ctl({"nodes", "remove", "n3"}, &out, &err), 0) << err;
  EXPECT_EQ(ListNodes().nodes_size(), 2);
  ASSERT_EQ(Ctl({"snapshots", "create", "--wait"}, &out, &err), 0) << err;
  EXPECT_NE(out.find("4/4 published"), std::string::npos) << out;
}

// A node crashes (SIGKILL: it did not leave) just before an operator asks
// for a snapshot and waits: the wait says that its partitions are waiting
// and where to read why, and the snapshot commits once the node is back.
TEST_F(MembershipTest, AWaitSaysWhatWaitsForACrashedNodeAndEndsWhenItReturns) {
  Start(2, 2, {}, /*dead_after_ms=*/60000);
  ASSERT_OK(cluster_->StopNode(1, SIGKILL));
  const std::string log = tmp_.Sub("wait.log");
  testing::Subprocess wait;
  StartWaitingCreate(&wait, log);
  ASSERT_TRUE(LogShows(log, "2 waiting (shutterctl snapshots show "))
      << testing::ReadFileOrEmpty(log);
  // A script's bounded wait gives up instead, exit 4, and the job goes on.
  const std::string bounded_log = tmp_.Sub("bounded.log");
  testing::Subprocess bounded;
  ASSERT_OK(bounded.Start(
      {SHUTTERCTL_BIN, "snapshots", "create", "--wait", "--wait-timeout", "1"},
      bounded_log, {"SHUTTER_CONTROLLER=" + cluster_->controller_address()}));
  int bounded_status = 0;
  ASSERT_TRUE(PollUntil([&] { return bounded.Exited(&bounded_status); },
                        absl::Seconds(30)))
      << testing::ReadFileOrEmpty(bounded_log);
  EXPECT_TRUE(WIFEXITED(bounded_status) && WEXITSTATUS(bounded_status) == 4)
      << testing::ReadFileOrEmpty(bounded_log);
  EXPECT_TRUE(LogShows(bounded_log, "gave up waiting after 1s: snapshot "))
      << testing::ReadFileOrEmpty(bounded_log);
  EXPECT_TRUE(LogShows(bounded_log, " is still RUNNING and goes on"))
      << testing::ReadFileOrEmpty(bounded_log);
  ASSERT_OK(cluster_->StartNode(1));
  int status = 0;
  ASSERT_TRUE(
      PollUntil([&] { return wait.Exited(&status); }, absl::Seconds(60)))
      << testing::ReadFileOrEmpty(log);
  const std::string text = testing::ReadFileOrEmpty(log);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << text;
  EXPECT_NE(text.find("4/4 partitions published, 0 running, 0 failed "
                      "[COMMITTED]"),
            std::string::npos)
      << text;
  // The job the bounded wait left went on and committed too.
  ASSERT_TRUE(PollUntil(
      [&] {
        grpc::ClientContext ctx;
        ListSnapshotsResponse resp;
        if (!cluster_->admin()
                 ->ListSnapshots(&ctx, ListSnapshotsRequest(), &resp)
                 .ok()) {
          return false;
        }
        int committed = 0;
        for (const auto& s : resp.snapshots()) {
          committed += s.state() == SNAPSHOT_STATE_COMMITTED;
        }
        return committed == 2;
      },
      absl::Seconds(60)));
}

// The controller is killed and restarted while an operator waits for a
// snapshot: the wait says the controller does not answer, keeps waiting,
// and ends with the snapshot committed (exit 0), as the job resumed,
// instead of failing a snapshot that did not fail.
TEST_F(MembershipTest, AWaitRidesOutAControllerRestart) {
  // 0.5 MiB per partition at 0.25 MiB/s, one at a time: ~4 s of work.
  Start(1, 2, {"--publish-stream-mibps", "0.25"}, /*dead_after_ms=*/5000,
        /*capacity=*/1);
  std::mt19937_64 rng(7);
  for (int p = 0; p < 2; ++p) WriteRandom(p, 128, 4096, rng);
  const std::string log = tmp_.Sub("wait.log");
  testing::Subprocess wait;
  StartWaitingCreate(&wait, log);
  ASSERT_TRUE(LogShows(log, "0/2 partitions published"))
      << testing::ReadFileOrEmpty(log);
  ASSERT_OK(cluster_->StopController(SIGKILL).status());
  ASSERT_TRUE(LogShows(
      log, "the controller does not answer (UNAVAILABLE); still waiting"))
      << testing::ReadFileOrEmpty(log);
  int status = 0;
  EXPECT_FALSE(wait.Exited(&status)) << testing::ReadFileOrEmpty(log);
  ASSERT_OK(cluster_->StartController());
  ASSERT_TRUE(
      PollUntil([&] { return wait.Exited(&status); }, absl::Seconds(60)))
      << testing::ReadFileOrEmpty(log);
  const std::string text = testing::ReadFileOrEmpty(log);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << text;
  EXPECT_NE(text.find("the controller answers again"), std::string::npos)
      << text;
  EXPECT_NE(text.find("2/2 partitions published, 0 running, 0 failed "
                      "[COMMITTED]"),
            std::string::npos)
      << text;
}

// Operators restart nodes one at a time (rolling upgrades) while
// snapshots run. Each node is stopped (SIGTERM) while it has checkpoints
// of the snapshot to do, stays down about 2 s (less than the controller's
// 5 s dead-after, so it still counts as alive), and comes back on another
// port with higher epochs. The snapshot must commit and verify, and
// waiting for the nodes must not have used up attempts.
TEST_F(MembershipTest, RollingRestartOfEveryNodeDuringASnapshotCommits) {
  constexpr int kNodes = 3, kPerNode = 8, kKeys = 128, kValue = 4096;
  // 0.5 MiB per partition, published at 0.25 MiB/s: ~2 s per checkpoint,
  // one at a time, so each node has ~16 s of work: the last node is still
  // busy when its turn to restart comes (each restart takes ~4 s).
  const std::vector<std::string> slow = {"--publish-stream-mibps", "0.25"};
  Start(kNodes, kPerNode, slow, /*dead_after_ms=*/5000, /*capacity=*/1);
  std::mt19937_64 rng(11);
  for (int p = 0; p < kNodes * kPerNode; ++p) {
    WriteRandom(p, kKeys, kValue, rng);
  }
  auto id = cluster_->CreateSnapshot();
  ASSERT_OK(id);
  for (int i = 0; i < kNodes; ++i) {
    const std::string node = testing::LocalCluster::NodeId(i);
    SCOPED_TRACE(node);
    // Strike while the node has a checkpoint running and work left.
    bool busy = PollUntil(
        [&] {
          auto s = cluster_->GetSnapshot(*id);
          if (!s.ok()) return false;
          bool running = false;
          for (const auto& t : s->partitions()) {
            running |= t.node_id() == node &&
                       t.state() == PARTITION_TASK_STATE_RUNNING;
          }
          return running;
        },
        absl::Seconds(60));
    ASSERT_TRUE(busy) << "the snapshot ended before " << node << " restarted";
    auto st = cluster_->StopNode(i, SIGTERM);
    ASSERT_OK(st);
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0);
    absl::SleepFor(absl::Seconds(2));  // the node's downtime
    ASSERT_OK(cluster_->StartNode(i, slow));
  }
  auto snap = cluster_->WaitForSnapshot(*id, absl::Seconds(120));
  ASSERT_OK(snap);
  ASSERT_EQ(snap->state(), SNAPSHOT_STATE_COMMITTED) << snap->error();
  uint32_t waited = 0;
  for (const auto& t : snap->partitions()) {
    SCOPED_TRACE(absl::StrCat("partition ", t.partition_id()));
    // Waiting costs nothing; at most one stale-epoch answer per restart.
    EXPECT_LE(t.attempts(), 2u);
    waited += t.unreachable();
  }
  EXPECT_GT(waited, 0u) << "no task ever waited for a restarting node";
  std::string out, err;
  ASSERT_EQ(Ctl({"snapshots", "verify", "--wait", *id}, &out, &err), 0)
      << out << err;
  auto repo = cluster_->OpenRepository();
  ASSERT_OK(repo);
  for (int p = 0; p < kNodes * kPerNode; ++p) {
    SCOPED_TRACE(absl::StrCat("partition ", p));
    auto pub = testing::CheckPublishedPartition(**repo, *id, p);
    ASSERT_NE(pub.checkpoint, nullptr);
    EXPECT_EQ(pub.manifest.applied_index(), 1u);
    EXPECT_EQ(*pub.checkpoint->CountKeys(), static_cast<uint64_t>(kKeys));
  }
}

}  // namespace membership_test
}  // namespace shutter
