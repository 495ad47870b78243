// End-to-end: a real controller and three real node processes on loopback,
// real RocksDB, real gRPC, a real shutterctl run, and the published
// checkpoints opened from the repository afterwards.
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "common/rpc.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "partition/partition_store.h"
#include "shutter/v1/admin.grpc.pb.h"
#include "shutter/v1/node.grpc.pb.h"
#include "shutter/v1/partition_data.grpc.pb.h"
#include "snapshot/repository.h"
#include "testing/binaries.h"
#include "testing/local_cluster.h"
#include "testing/process.h"
#include "testing/shutterctl.h"
#include "testing/snapshot_checks.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter {
namespace cluster_test {

using namespace shutter::v1;  // NOLINT
using testing::PollUntil;
using testing::RunCommand;
using testing::Subprocess;
using testing::WaitForPortFile;
namespace stdfs = std::filesystem;

constexpr int kNodes = 3;
constexpr int kPartitionsPerNode = 8;
constexpr int kPartitions = kNodes * kPartitionsPerNode;
constexpr int kCapacity = 2;
constexpr int kKeysBefore = 200;
constexpr int kBatches = 4;

std::string ValueFor(uint32_t partition, int key) {
  return absl::StrFormat("value-%u-%d-%s", partition, key,
                         std::string(100 + key % 50, 'x'));
}

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_dir_ = cluster_.repo_dir();
    ASSERT_OK(cluster_.StartController());
    ASSERT_OK(cluster_.StartAllNodes());
    ASSERT_OK(cluster_.WaitForLeaders(absl::Seconds(30)));
  }

  void TearDown() override {
    // Graceful stop: every daemon must exit 0 on SIGTERM, and promptly:
    // idle connections (this test's channel to the controller, the
    // controller's to the nodes, the nodes' to the controller) must not
    // hold it for the grace period (5 s controller, 10 s node).
    ASSERT_TRUE(cluster_.ListPartitions().partitions_size() > 0);
    for (int i = 0; i < kNodes; ++i) {
      if (!cluster_.node_running(i)) continue;
      auto st = cluster_.StopNode(i, SIGTERM, absl::Seconds(4));
      ASSERT_OK(st) << "node " << i << " did not stop within 4 s";
      EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "node " << i;
    }
    auto st = cluster_.StopController(SIGTERM, absl::Seconds(3));
    ASSERT_OK(st) << "controller did not stop within 3 s";
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0);
    if (HasFailure()) {
      for (const auto& e : stdfs::directory_iterator(tmp_.path())) {
        if (e.path().extension() == ".log") {
          std::string cmd = "tail -n 30 " + e.path().string();
          std::system(cmd.c_str());
        }
      }
    }
  }

  static std::string NodeId(int i) { return testing::LocalCluster::NodeId(i); }

  ListPartitionsResponse ListPartitions() { return cluster_.ListPartitions(); }

  void Write(uint32_t partition,
             std::vector<std::pair<std::string, std::string>> kvs) {
    ASSERT_OK(cluster_.Write(partition, kvs));
  }

  // Runs shutterctl against the controller; returns the exit code.
  int Ctl(std::vector<std::string> args, std::string* out, std::string* err) {
    return testing::RunShutterctl(cluster_, std::move(args), out, err);
  }

  testing::TempDir tmp_;
  testing::LocalCluster cluster_{{SHUTTER_CONTROLLER_BIN, SHUTTER_NODE_BIN,
                                  tmp_.path(), kNodes, kPartitionsPerNode,
                                  kCapacity}};
  std::string repo_dir_;
};

TEST_F(ClusterTest, SnapshotHoldsExactlyTheDataWrittenBeforeIt) {
  // Write kBatches batches to every partition through its leader.
  auto parts = ListPartitions();
  for (const auto& p : parts.partitions()) {
    for (int b = 0; b < kBatches; ++b) {
      std::vector<std::pair<std::string, std::string>> kvs;
      for (int k = b; k < kKeysBefore; k += kBatches) {
        kvs.emplace_back(absl::StrFormat("before-%05d", k),
                         ValueFor(p.partition_id(), k));
      }
      Write(p.partition_id(), kvs);
    }
  }

  std::string out, err;
  ASSERT_EQ(
      Ctl({"-o", "json", "snapshots", "create", "--label", "it", "--wait"},
          &out, &err),
      0)
      << out << err;
  EXPECT_NE(err.find(absl::StrCat(kPartitions, "/", kPartitions,
                                  " partitions published")),
            std::string::npos)
      << err;
  GetSnapshotResponse shown;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out, &shown).ok())
      << out;
  const Snapshot& snap = shown.snapshot();
  ASSERT_EQ(snap.state(), SNAPSHOT_STATE_COMMITTED) << snap.error();
  ASSERT_EQ(snap.partitions_size(), kPartitions);

  // Writes after the snapshot: new keys, and an overwrite of an old one.
  for (const auto& p : parts.partitions()) {
    Write(p.partition_id(),
          {{"after-0", "late"}, {"before-00000", "overwritten"}});
  }

  auto repo = snapshot::OpenRepository(repo_dir_);
  ASSERT_OK(repo);
  auto cm = (*repo)->ReadClusterManifest(snap.snapshot_id());
  ASSERT_OK(cm);
  EXPECT_EQ(cm->label(), "it");
  ASSERT_EQ(cm->partitions_size(), kPartitions);
  for (const auto& entry : cm->partitions()) {
    SCOPED_TRACE(absl::StrCat("partition ", entry.partition_id()));
    auto p = testing::CheckPublishedPartition(**repo, snap.snapshot_id(),
                                              entry.partition_id());
    ASSERT_NE(p.checkpoint, nullptr);
    const auto& pm = p.manifest;
    EXPECT_EQ(pm.applied_index(), static_cast<uint64_t>(kBatches));
    EXPECT_EQ(entry.applied_index(), pm.applied_index());
    EXPECT_EQ(pm.leader_epoch(), 1u);
    EXPECT_EQ(pm.node_id(), NodeId(entry.partition_id() / kPartitionsPerNode));
    const auto& ro = p.checkpoint;
    EXPECT_EQ(*ro->CountKeys(), static_cast<uint64_t>(kKeysBefore));
    for (int k = 0; k < kKeysBefore; ++k) {
      auto v = ro->Get(absl::StrFormat("before-%05d", k));
      ASSERT_OK(v);
      ASSERT_EQ(*v, ValueFor(entry.partition_id(), k));
    }
    EXPECT_FALSE(ro->Get("after-0").ok());
    // The cluster manifest pins the partition manifest by the SHA-256 of
    // its bytes, as an independent tool computes it.
    std::string sum, sum_err;
    auto rc = testing::RunCommand(
        {"/usr/bin/sha256sum", repo_dir_ + "/" + entry.manifest_path()}, &sum,
        &sum_err, absl::Seconds(30));
    ASSERT_OK(rc);
    ASSERT_EQ(*rc, 0) << sum_err;
    EXPECT_EQ(entry.manifest_sha256(), sum.substr(0, 64)) << sum;
  }

  // A partition manifest whose bytes changed (here only a trailing space:
  // it still parses and says the same) is no longer the one the snapshot
  // committed: verify names it by both digests.
  {
    const auto& entry = cm->partitions(3);
    const std::string path = repo_dir_ + "/" + entry.manifest_path();
    std::string bytes;
    {
      std::ifstream in(path, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    ASSERT_FALSE(bytes.empty());
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes << " ";
    EXPECT_EQ(
        Ctl({"snapshots", "verify", "--wait", snap.snapshot_id()}, &out, &err),
        1)
        << out << err;
    EXPECT_NE(err.find(absl::StrCat("partition ", entry.partition_id(),
                                    ": DATA_LOSS: ")),
              std::string::npos)
        << err;
    EXPECT_NE(err.find("not the one the cluster manifest recorded (" +
                       entry.manifest_sha256() + ")"),
              std::string::npos)
        << err;
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
    EXPECT_EQ(
        Ctl({"snapshots", "verify", "--wait", snap.snapshot_id()}, &out, &err),
        0)
        << out << err;
  }

  // The controller's connections are polled by its own queue threads only:
  // none of gRPC's callback-API threads ("nexting_thread"), which would
  // poll beside them and hand each heartbeat and answer between each other
  // (docs/performance.md, "One queue thread"), even after a snapshot and
  // verifies have called every node.
  {
    const std::vector<std::string> threads =
        testing::ThreadNames(cluster_.controller_pid());
    EXPECT_FALSE(threads.empty());
    EXPECT_EQ(std::count(threads.begin(), threads.end(), "nexting_thread"), 0)
        << absl::StrJoin(threads, ", ");
    // Every thread Shutter starts has a name (docs/operations.md,
    // "Threads"); still named after the process: the main thread and
    // RocksDB's periodic-task timer, which RocksDB leaves unnamed.
    auto count = [&](const char* name) {
      return std::count(threads.begin(), threads.end(), name);
    };
    EXPECT_EQ(count("queue"), 1) << absl::StrJoin(threads, ", ");
    EXPECT_EQ(count("dispatch-0"), 1) << absl::StrJoin(threads, ", ");
    EXPECT_EQ(count("job-commit"), 1) << absl::StrJoin(threads, ", ");
    EXPECT_EQ(count("node-answers"), 4) << absl::StrJoin(threads, ", ");
    EXPECT_LE(count("shutter-control"), 2) << absl::StrJoin(threads, ", ");
    const std::vector<std::string> node_threads =
        testing::ThreadNames(cluster_.node_pid(0));
    EXPECT_EQ(
        std::count(node_threads.begin(), node_threads.end(), "heartbeater"), 1)
        << absl::StrJoin(node_threads, ", ");
    EXPECT_EQ(
        std::count(node_threads.begin(), node_threads.end(), "checkpoint-0"), 1)
        << absl::StrJoin(node_threads, ", ");
  }

  // No node ever ran more checkpoints at once than its capacity, nor held
  // more than a second round sent ahead (--queue-at-nodes), and none is
  // left in staging.
  for (int i = 0; i < kNodes; ++i) {
    auto stats = cluster_.NodeStats(i);
    ASSERT_OK(stats);
    const auto& st = *stats;
    EXPECT_LE(st.peak_checkpoints_running(), static_cast<uint32_t>(kCapacity));
    EXPECT_GE(st.peak_checkpoints_running(), 1u);
    EXPECT_LE(st.peak_checkpoints_in_flight(),
              static_cast<uint32_t>(2 * kCapacity));
    EXPECT_EQ(st.checkpoints_published(),
              static_cast<uint64_t>(kPartitionsPerNode));
    EXPECT_TRUE(stdfs::is_empty(tmp_.Sub(absl::StrCat("node", i, "/staging"))));
  }

  // The listing and the human view agree.
  ASSERT_EQ(Ctl({"snapshots", "list"}, &out, &err), 0) << err;
  EXPECT_NE(out.find(snap.snapshot_id()), std::string::npos) << out;
  EXPECT_NE(out.find("COMMITTED"), std::string::npos) << out;
  ASSERT_EQ(Ctl({"snapshots", "show", snap.snapshot_id()}, &out, &err), 0);
  EXPECT_NE(out.find("24/24 published"), std::string::npos) << out;
  ASSERT_EQ(Ctl({"nodes", "list"}, &out, &err), 0);
  EXPECT_NE(out.find("alive"), std::string::npos) << out;
  // Every row has a value under every column of the header.
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 1u + kNodes) << out;
  for (const auto& line : lines) {
    std::vector<std::string> cols =
        absl::StrSplit(line, "  ", absl::SkipWhitespace());
    // "LAST SEEN" / "IN FLIGHT" / "0.1s ago" contain single spaces only.
    EXPECT_EQ(cols.size(), 15u) << line;
  }
}

TEST_F(ClusterTest, StaleEpochCheckpointIsRejectedAndPublishesNothing) {
  // Restarting a node makes it take leadership again: epoch 1 -> 2.
  auto st = cluster_.StopNode(0, SIGTERM);
  ASSERT_OK(st);
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0);
  ASSERT_OK(cluster_.StartNode(0));
  ASSERT_OK(cluster_.WaitForLeaders(
      absl::Seconds(30), [](const ListPartitionsResponse& parts) {
        return parts.partitions(0).leader_epoch() == 2;
      }));

  auto stub = NodeService::NewStub(MakeChannel(cluster_.node_address(0)));
  CreateCheckpointRequest req;
  req.set_snapshot_id("stale-epoch-probe");
  req.set_partition_id(0);
  req.set_expected_leader_epoch(1);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  CreateCheckpointResponse resp;
  grpc::Status s = stub->CreateCheckpoint(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("expects epoch 1"), std::string::npos)
      << s.error_message();
  EXPECT_NE(s.error_message().find("leads at epoch 2"), std::string::npos)
      << s.error_message();
  EXPECT_FALSE(stdfs::exists(repo_dir_ + "/snapshots/stale-epoch-probe"));
  EXPECT_TRUE(stdfs::is_empty(tmp_.Sub("node0/staging")));
}

TEST_F(ClusterTest, BadRequestsGetClearErrorsAndRecordNothing) {
  std::string out, err;
  EXPECT_EQ(Ctl({"snapshots", "create", "--partitions", "0,99"}, &out, &err),
            1);
  EXPECT_NE(err.find("unknown partition 99"), std::string::npos) << err;
  EXPECT_EQ(err.find('\n'), err.size() - 1) << "one line: " << err;
  EXPECT_EQ(Ctl({"snapshots", "create", "--partitions", "5-1"}, &out, &err), 2);
  EXPECT_NE(err.find("--partitions"), std::string::npos) << err;
  EXPECT_EQ(Ctl({"snapshots", "show", "no-such-snapshot"}, &out, &err), 1);
  EXPECT_NE(err.find("NOT_FOUND"), std::string::npos) << err;
  EXPECT_EQ(Ctl({"snapshots", "frobnicate"}, &out, &err), 2);
  ASSERT_EQ(Ctl({"-o", "json", "snapshots", "list"}, &out, &err), 0);
  ListSnapshotsResponse list;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out, &list).ok());
  EXPECT_EQ(list.snapshots_size(), 0);
  // The global options go after the command too, as operators type them.
  ASSERT_EQ(Ctl({"snapshots", "list", "-o", "json", "--timeout-ms", "5000"},
                &out, &err),
            0)
      << err;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out, &list).ok())
      << out;
  EXPECT_EQ(Ctl({"snapshots", "list", "-o", "yaml"}, &out, &err), 2);
  EXPECT_NE(err.find("--output"), std::string::npos) << err;
  EXPECT_EQ(Ctl({"snapshots", "list", "--frobnicate"}, &out, &err), 2);
  EXPECT_NE(err.find("--frobnicate"), std::string::npos) << err;
  // A command's help says where the global options are.
  ASSERT_EQ(Ctl({"snapshots", "list", "--help"}, &out, &err), 0) << err;
  EXPECT_NE(out.find("snapshots list [OPTIONS]"), std::string::npos) << out;
  EXPECT_NE(out.find("Global options (--controller, -o/--output"),
            std::string::npos)
      << out;
  {
    auto repo = snapshot::OpenRepository(repo_dir_);
    ASSERT_OK(repo);
    EXPECT_TRUE(testing::SnapshotObjects(**repo).empty());
  }

  // A daemon given an invalid option exits 2 with a one-line reason.
  auto rc = RunCommand({SHUTTER_NODE_BIN, "--insecure", "--node-id", "x",
                        "--data-dir", tmp_.Sub("x"), "--repository", repo_dir_,
                        "--partitions", "0", "--checkpoint-capacity", "0"},
                       &out, &err, absl::Seconds(30));
  ASSERT_OK(rc);
  EXPECT_EQ(*rc, 2);
  EXPECT_NE(err.find("--checkpoint-capacity"), std::string::npos) << err;
  rc = RunCommand({SHUTTER_CONTROLLER_BIN, "--insecure", "--data-dir",
                   tmp_.Sub("y"), "--repository", "gs://bucket"},
                  &out, &err, absl::Seconds(30));
  ASSERT_OK(rc);
  EXPECT_EQ(*rc, 2);
  EXPECT_NE(err.find("unsupported scheme"), std::string::npos) << err;
}

// Exactly one line, ending in a newline.
bool OneLine(const std::string& s) {
  return !s.empty() && s.find('\n') == s.size() - 1;
}

TEST_F(ClusterTest, DaemonsRefuseBadOptionsNamingThem) {
  std::string out, err;
  auto node = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {
        SHUTTER_NODE_BIN, "--insecure",
        "--node-id",      "x",
        "--partitions",   "0",
        "--repository",   repo_dir_,
        "--controller",   cluster_.controller_address()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto rc = RunCommand(argv, &out, &err, absl::Seconds(30));
    EXPECT_OK(rc);
    return rc.ok() ? *rc : -1;
  };
  auto controller = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {SHUTTER_CONTROLLER_BIN, "--insecure",
                                     "--repository", tmp_.Sub("repo2")};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto rc = RunCommand(argv, &out, &err, absl::Seconds(30));
    EXPECT_OK(rc);
    return rc.ok() ? *rc : -1;
  };
  // Ports past 65535 are refused (gRPC would take them modulo 65536).
  EXPECT_EQ(node({"--data-dir", tmp_.Sub("x"), "--listen", "127.0.0.1:99999"}),
            2);
  EXPECT_NE(err.find("--listen"), std::string::npos) << err;
  EXPECT_NE(err.find("65535"), std::string::npos) << err;
  EXPECT_EQ(
      controller({"--data-dir", tmp_.Sub("c"), "--listen", "127.0.0.1:99999"}),
      2);
  EXPECT_NE(err.find("--listen"), std::string::npos) << err;
  EXPECT_EQ(node({"--data-dir", tmp_.Sub("x"), "--controller", "localhost"}),
            2);
  EXPECT_NE(err.find("--controller"), std::string::npos) << err;
  // An unusable data directory: a file, or below a file.
  const std::string file = tmp_.Sub("a-file");
  { std::ofstream(file) << "x"; }
  for (const std::string& dir : {file, file + "/sub"}) {
    EXPECT_EQ(node({"--data-dir", dir, "--listen", "127.0.0.1:0"}), 2) << dir;
    EXPECT_NE(err.find("--data-dir"), std::string::npos) << err;
    EXPECT_TRUE(OneLine(err)) << err;
    EXPECT_EQ(controller({"--data-dir", dir, "--listen", "127.0.0.1:0"}), 2);
    EXPECT_NE(err.find("--data-dir"), std::string::npos) << err;
  }
  // A busy port: one line from the daemon, no raw gRPC log line before it.
  // Nothing else happened: the node's epochs were not raised (it binds
  // before it takes leadership).
  EXPECT_EQ(controller({"--data-dir", tmp_.Sub("c"), "--listen",
                        cluster_.controller_address()}),
            2);
  EXPECT_TRUE(OneLine(err)) << err;
  EXPECT_NE(err.find("--listen"), std::string::npos) << err;
  EXPECT_NE(err.find("already in use"), std::string::npos) << err;
  EXPECT_EQ(
      node({"--data-dir", tmp_.Sub("x"), "--listen", cluster_.node_address(1)}),
      2);
  EXPECT_TRUE(OneLine(err)) << err;
  EXPECT_NE(err.find("already in use"), std::string::npos) << err;
  // A second daemon on a running one's data directory says so, and the
  // running one goes on.
  EXPECT_EQ(controller({"--data-dir", tmp_.Sub("controller"), "--listen",
                        "127.0.0.1:0"}),
            2);
  EXPECT_TRUE(OneLine(err)) << err;
  EXPECT_NE(err.find(absl::StrCat("in use by another process (pid ",
                                  cluster_.controller_pid(), ")")),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("is another shutter-controller running on it?"),
            std::string::npos)
      << err;
  {
    auto rc = RunCommand(
        {SHUTTER_NODE_BIN, "--insecure", "--node-id",
         testing::LocalCluster::NodeId(0), "--partitions", "0", "--repository",
         repo_dir_, "--controller", cluster_.controller_address(), "--data-dir",
         cluster_.node_dir(0), "--listen", "127.0.0.1:0"},
        &out, &err, absl::Seconds(30));
    ASSERT_OK(rc);
    EXPECT_EQ(*rc, 2);
    EXPECT_TRUE(OneLine(err)) << err;
    EXPECT_NE(err.find(absl::StrCat("in use by another process (pid ",
                                    cluster_.node_pid(0), ")")),
              std::string::npos)
        << err;
    EXPECT_NE(err.find("is another shutter-node running on it?"),
              std::string::npos)
        << err;
    // It stopped before touching the running node's incarnation.
    auto instance = fs::ReadFile(cluster_.node_dir(0) + "/NODE_INSTANCE");
    ASSERT_OK(instance);
    EXPECT_TRUE(absl::StrContains(*instance, "start_count=1\n")) << *instance;
  }
  EXPECT_OK(cluster_.NodeStats(0).status());
  EXPECT_EQ(Ctl({"nodes", "list"}, &out, &err), 0) << err;
}

TEST_F(ClusterTest, AdminApiAnswersMalformedInputWithInvalidArgument) {
  AdminService::Stub* admin = cluster_.admin();
  auto code_and_message = [](const grpc::Status& s) {
    return absl::StrCat(s.error_code(), " ", s.error_message());
  };
  // A 10 KB id: a short INVALID_ARGUMENT, not RESOURCE_EXHAUSTED because
  // the whole id was echoed into the error.
  for (const std::string& id :
       {std::string(10000, 'x'), std::string("../../etc"), std::string("a/b"),
        std::string(""), std::string("a\0b", 3)}) {
    grpc::ClientContext c1, c2, c3;
    GetSnapshotRequest g;
    g.set_snapshot_id(id);
    GetSnapshotResponse gr;
    grpc::Status s = admin->GetSnapshot(&c1, g, &gr);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << code_and_message(s);
    EXPECT_LT(s.error_message().size(), 300u);
    CancelSnapshotRequest c;
    c.set_snapshot_id(id);
    CancelSnapshotResponse cr;
    s = admin->CancelSnapshot(&c2, c, &cr);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << code_and_message(s);
    VerifySnapshotRequest v;
    v.set_snapshot_id(id);
    VerifySnapshotResponse vr;
    s = admin->VerifySnapshot(&c3, v, &vr);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << code_and_message(s);
  }
  // A label that is not UTF-8 cannot even be parsed: INVALID_ARGUMENT with
  // a reason, not a bare INTERNAL.
  {
    grpc::ClientContext ctx;
    CreateSnapshotRequest req;
    req.set_label(std::string("caf\xc3", 4));
    CreateSnapshotResponse resp;
    grpc::Status s = admin->CreateSnapshot(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << code_and_message(s);
    EXPECT_NE(s.error_message().find("UTF-8"), std::string::npos)
        << code_and_message(s);
  }
  // Control characters in a label are refused, through the CLI too.
  std::string out, err;
  EXPECT_EQ(Ctl({"snapshots", "create", "--label",
                 "x\n2026-11-27 I controller forged line\x1b[2J"},
                &out, &err),
            1);
  EXPECT_NE(err.find("control character"), std::string::npos) << err;
  EXPECT_TRUE(OneLine(err)) << err;
  // A node refuses a 10 KB snapshot id with a short message too.
  auto node = NodeService::NewStub(MakeChannel(cluster_.node_address(0)));
  grpc::ClientContext ctx;
  CreateCheckpointRequest ck;
  ck.set_snapshot_id(std::string(10000, 'y'));
  CreateCheckpointResponse ckr;
  grpc::Status s = node->CreateCheckpoint(&ctx, ck, &ckr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << code_and_message(s);
  EXPECT_LT(s.error_message().size(), 300u);
  // An unknown command names the word.
  EXPECT_EQ(Ctl({"snapshots", "frobnicate"}, &out, &err), 2);
  EXPECT_NE(err.find("frobnicate"), std::string::npos) << err;
  EXPECT_NE(err.find("create"), std::string::npos) << err;
  // Nothing was recorded.
  ASSERT_EQ(Ctl({"-o", "json", "snapshots", "list"}, &out, &err), 0);
  ListSnapshotsResponse list;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out, &list).ok());
  EXPECT_EQ(list.snapshots_size(), 0);
}

TEST_F(ClusterTest, DataPlaneAnswersFitAClientWithDefaultLimits) {
  const std::string leader = ListPartitions().partitions(0).leader_address();
  // A client with gRPC's default 4 MiB receive limit.
  auto data = PartitionData::NewStub(
      grpc::CreateChannel(leader, grpc::InsecureChannelCredentials()));
  auto write = [&](std::vector<std::pair<std::string, size_t>> kvs) {
    grpc::ClientContext ctx;
    WriteRequest req;
    req.set_partition_id(0);
    for (auto& [k, size] : kvs) {
      auto* put = req.add_mutations()->mutable_put();
      put->set_key(k);
      put->set_value(std::string(size, 'v'));
    }
    WriteResponse resp;
    return data->Write(&ctx, req, &resp);
  };
  grpc::Status s = write({{"too-big", (1 << 20) + 1}});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("limit"), std::string::npos)
      << s.error_message();
  for (int i = 0; i < 10; i += 2) {
    ASSERT_TRUE(write({{absl::StrCat("big-", i), 512 << 10},
                       {absl::StrCat("big-", i + 1), 512 << 10}})
                    .ok());
  }
  // Scan pages are bounded by bytes: all ten values come back, in pages.
  std::string start = "big-";
  int seen = 0, pages = 0;
  for (;;) {
    grpc::ClientContext ctx;
    ScanRequest req;
    req.set_partition_id(0);
    req.set_start_key(start);
    req.set_end_key("big-~");
    ScanResponse resp;
    grpc::Status st = data->Scan(&ctx, req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    seen += resp.entries_size();
    ++pages;
    if (resp.next_key().empty()) break;
    start = resp.next_key();
  }
  EXPECT_EQ(seen, 10);
  EXPECT_GE(pages, 3);
  // A Get whose answer would not fit is refused with the reason.
  grpc::ClientContext ctx;
  GetRequest get;
  get.set_partition_id(0);
  for (int i = 0; i < 10; ++i) get.add_keys(absl::StrCat("big-", i));
  GetResponse gr;
  s = data->Get(&ctx, get, &gr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << s.error_message();
  grpc::ClientContext ctx2;
  get.mutable_keys()->DeleteSubrange(4, 6);
  ASSERT_TRUE(data->Get(&ctx2, get, &gr).ok());
  EXPECT_EQ(gr.results_size(), 4);
}

// The systemd protocol for real: the daemon is started as systemd would
// start it under WatchdogSec= (NOTIFY_SOCKET, WATCHDOG_USEC) with its
// listener self-check turned off, and this test plays the service manager
// on a Unix datagram socket: READY=1 comes once serving, then WATCHDOG=1
// keeps coming (each after a probe through the listener), several per
// interval; STOPPING=1 at SIGTERM.
TEST(SystemdTest, DaemonNotifiesReadinessAndFeedsTheWatchdog) {
  testing::TempDir tmp;
  const std::string sock_path = tmp.Sub("notify.sock");
  int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(sock, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(sock_path.size(), sizeof(addr.sun_path));
  std::strcpy(addr.sun_path, sock_path.c_str());
  ASSERT_EQ(bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  // The child inherits these; this test process does not use them.
  setenv("NOTIFY_SOCKET", sock_path.c_str(), 1);
  setenv("WATCHDOG_USEC", "900000", 1);  // 0.9 s: probes every 0.3 s
  Subprocess controller;
  absl::Status started = controller.Start(
      {SHUTTER_CONTROLLER_BIN, "--insecure", "--listen", "127.0.0.1:0",
       "--data-dir", tmp.Sub("controller"), "--repository", tmp.Sub("repo"),
       "--listener-check-ms", "0"},
      tmp.Sub("controller.log"));
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  ASSERT_OK(started);
  int ready = 0, pings = 0, stopping = 0;
  auto receive = [&](absl::Duration timeout) {
    pollfd p{sock, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) <=
        0) {
      return false;
    }
    char buf[512];
    ssize_t n = recv(sock, buf, sizeof(buf) - 1, 0);
    if (n <= 0) return false;
    std::string msg(buf, static_cast<size_t>(n));
    if (msg.find("READY=1") != std::string::npos) ++ready;
    if (msg.find("WATCHDOG=1") != std::string::npos) ++pings;
    if (msg.find("STOPPING=1") != std::string::npos) ++stopping;
    return true;
  };
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while ((ready == 0 || pings < 4) && absl::Now() < deadline) {
    receive(deadline - absl::Now());
  }
  EXPECT_EQ(ready, 1);
  EXPECT_GE(pings, 4);
  auto st = controller.Stop(SIGTERM, absl::Seconds(10));
  ASSERT_OK(st);
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0);
  while (receive(absl::ZeroDuration())) {
  }
  EXPECT_EQ(stopping, 1);
  close(sock);
  auto log = fs::ReadFile(tmp.Sub("controller.log"));
  ASSERT_OK(log);
  EXPECT_NE(log->find("systemd watchdog every 900ms"), std::string::npos)
      << *log;
}

// A connection storm against a controller with a deliberately low limit on
// open files: 300 clients connect and never finish their handshake, then
// go away. The controller must serve again afterwards, or, if its
// listener died, say so and exit non-zero (so that systemd restarts it):
// never stay alive accepting nothing.
TEST(ConnectionStormTest, LowFileLimitEndsServingOrExitingNeverHanging) {
  testing::TempDir tmp;
  const std::string port_file = tmp.Sub("controller.port");
  Subprocess controller;
  ASSERT_OK(controller.Start(
      {"/usr/bin/prlimit", "--nofile=96:96", "--", SHUTTER_CONTROLLER_BIN,
       "--insecure", "--listen", "127.0.0.1:0", "--port-file", port_file,
       "--data-dir", tmp.Sub("controller"), "--repository", tmp.Sub("repo"),
       "--listener-check-ms", "300"},
      tmp.Sub("controller.log")));
  auto port = WaitForPortFile(port_file, absl::Seconds(30), &controller);
  ASSERT_OK(port);
  const std::string target = absl::StrCat("127.0.0.1:", *port);
  std::vector<int> fds;
  for (int i = 0; i < 300; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(*port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(fd);
      continue;
    }
    fds.push_back(fd);
  }
  // Let the controller meet the storm (accept() running out of files),
  // while the connections are held open.
  absl::SleepFor(absl::Seconds(1));  // the storm's duration
  for (int fd : fds) close(fd);
  int status = 0;
  bool exited = false, serving = false;
  ASSERT_TRUE(PollUntil(
      [&] {
        if (controller.Exited(&status)) {
          exited = true;
          return true;
        }
        // A fresh channel: a new connection must be accepted.
        grpc::ChannelArguments args;
        args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
        auto admin = AdminService::NewStub(grpc::CreateCustomChannel(
            target, grpc::InsecureChannelCredentials(), args));
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(500));
        ListNodesResponse resp;
        serving = admin->ListNodes(&ctx, ListNodesRequest(), &resp).ok();
        return serving;
      },
      absl::Seconds(60)))
      << "alive but accepting nothing";
  if (exited) {
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << status;
    auto log = fs::ReadFile(tmp.Sub("controller.log"));
    ASSERT_OK(log);
    EXPECT_NE(log->find("accepts no connections"), std::string::npos) << *log;
  } else {
    EXPECT_TRUE(serving);
    auto st = controller.Stop(SIGTERM, absl::Seconds(10));
    ASSERT_OK(st);
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0);
  }
  std::printf("connection storm: controller %s\n",
              exited ? "exited non-zero (listener died)" : "serves again");
}

}  // namespace cluster_test
}  // namespace shutter
