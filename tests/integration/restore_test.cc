// Restore end to end, with real daemons and shutterctl, against a
// directory and against a real S3-protocol server (moto_server): a
// snapshot restored onto running partitions brings back exactly the
// snapshot's state (checked key by key through PartitionData), raises the
// epoch so writers of the old one are fenced, and survives a node killed
// at each phase of the swap, a corrupt object and a killed controller.
#include <csignal>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/rpc.h"
#include "gtest/gtest.h"
#include "partition/partition_store.h"
#include "shutter/v1/admin.pb.h"
#include "shutter/v1/partition_data.grpc.pb.h"
#include "snapshot/blob_store.h"
#include "snapshot/repository.h"
#include "testing/binaries.h"
#include "testing/local_cluster.h"
#include "testing/process.h"
#include "testing/s3_server.h"
#include "testing/sanitizers.h"
#include "testing/shutterctl.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter {
namespace restore_test {

using namespace shutter::v1;  // NOLINT
using testing::PollUntil;
using testing::RunCommand;

constexpr int kNodes = 2;
constexpr int kPerNode = 3;
using Contents = std::map<std::string, std::string>;

class RestoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "s3") {
      auto s3 = testing::StartS3For(cluster_, tmp_.Sub("s3"), "shutter");
      SHUTTER_S3_OR_SKIP(s3);
      s3_ = *std::move(s3);
    }
    ASSERT_OK(cluster_.StartController());
    ASSERT_OK(cluster_.StartAllNodes());
    ASSERT_OK(cluster_.WaitForLeaders(absl::Seconds(30)));
    started_ = true;
  }
  void TearDown() override {
    if (!started_) return;
    if (HasFailure()) {
      for (const std::string& log :
           {std::string("controller.log"), std::string("node0.log")}) {
        auto text = fs::ReadFile(tmp_.Sub(log));
        if (text.ok()) std::cerr << log << ":\n" << *text;
      }
    }
    cluster_.CloseChannels();
    cluster_.StopAllNodes();
    cluster_.StopController(SIGTERM).IgnoreError();
  }

  int Ctl(std::vector<std::string> args, std::string* out, std::string* err) {
    return testing::RunShutterctl(cluster_, std::move(args), out, err);
  }
  template <typename M>
  M Json(const std::string& out) {
    return testing::FromJson<M>(out);
  }

  static int NodeOf(uint32_t p) { return static_cast<int>(p) / kPerNode; }
  std::unique_ptr<PartitionData::Stub> Data(uint32_t p) {
    return PartitionData::NewStub(
        cluster_.ChannelTo(cluster_.node_address(NodeOf(p))));
  }

  // One batch through the data plane, at `epoch` (0: unfenced).
  absl::StatusOr<WriteResponse> Apply(uint32_t p, const WriteRequest& batch,
                                      uint64_t epoch = 0) {
    WriteRequest req = batch;
    req.set_partition_id(p);
    req.set_leader_epoch(epoch);
    req.set_sync(true);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    WriteResponse resp;
    grpc::Status s = Data(p)->Write(&ctx, req, &resp);
    if (!s.ok()) return FromGrpcStatus(s);
    return resp;
  }

  // Every key and value of a partition, paging through Scan.
  absl::StatusOr<Contents> ScanAll(uint32_t p) {
    Contents out;
    std::string start;
    for (;;) {
      ScanRequest req;
      req.set_partition_id(p);
      req.set_start_key(start);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
      ScanResponse resp;
      grpc::Status s = Data(p)->Scan(&ctx, req, &resp);
      if (!s.ok()) return FromGrpcStatus(s);
      for (const auto& kv : resp.entries()) out[kv.key()] = kv.value();
      if (resp.next_key().empty()) return out;
      start = resp.next_key();
    }
  }

  // A round of puts (binary keys, one large value), overwrites and deletes
  // in every partition, applied to the model as well.
  void WriteRound(int round) {
    for (uint32_t p = 0; p < static_cast<uint32_t>(cluster_.partitions());
         ++p) {
      std::mt19937 rng(round * 1000 + p);
      WriteRequest batch;
      Contents& m = model_[p];
      for (int i = 0; i < 60; ++i) {
        std::string key = absl::StrFormat("k%03d", rng() % 100);
        if (i % 7 == 0) key += std::string("\0\xff\x01", 3);  // binary key
        if (i % 5 == 4 && !m.empty()) {
          auto it = m.begin();
          std::advance(it, rng() % m.size());
          batch.add_mutations()->mutable_delete_()->set_key(it->first);
          m.erase(it->first);
          continue;
        }
        std::string value = absl::StrFormat("r%d-p%u-%d-", round, p, i);
        const size_t size = i == 0 ? 300 << 10 : 200;  // one large value
        while (value.size() < size) value.push_back(static_cast<char>(rng()));
        auto* put = batch.add_mutations()->mutable_put();
        put->set_key(key);
        put->set_value(value);
        m[key] = value;
      }
      auto r = Apply(p, batch);
      ASSERT_OK(r);
      applied_[p] = r->applied_index();
      epoch_[p] = r->leader_epoch();
    }
  }

  void ExpectContents(uint32_t p, const Contents& want,
                      const std::string& why) {
    auto got = ScanAll(p);
    ASSERT_OK(got);
    EXPECT_EQ(got->size(), want.size()) << why << ": partition " << p;
    EXPECT_TRUE(*got == want)
        << why << ": partition " << p << " differs from the expected state";
  }

  std::string Snapshot() {
    std::string out, err;
    EXPECT_EQ(Ctl({"-o", "json", "snapshots", "create", "--wait"}, &out, &err),
              0)
        << err;
    return Json<GetSnapshotResponse>(out).snapshot().snapshot_id();
  }

  // Restores `id` (all partitions unless `partitions`) and waits.
  GetSnapshotResponse RestoreAndWait(const std::string& id, int want_rc,
                                     const std::string& partitions = "") {
    std::vector<std::string> args = {"-o",      "json", "snapshots",
                                     "restore", id,     "--wait"};
    if (!partitions.empty()) {
      args.push_back("--partitions");
      args.push_back(partitions);
    }
    std::string out, err;
    EXPECT_EQ(Ctl(args, &out, &err), want_rc) << err;
    return Json<GetSnapshotResponse>(out);
  }

  // Checks a stopped node's stores on disk, opened read-only with RocksDB:
  // each holds exactly the state `before` or the state `after`.
  void ExpectOldOrNewOnDisk(int node,
                            const std::map<uint32_t, Contents>& before,
                            const std::map<uint32_t, Contents>& after,
                            const std::string& why) {
    for (uint32_t p = node * kPerNode;
         p < static_cast<uint32_t>((node + 1) * kPerNode); ++p) {
      const std::string dir =
          absl::StrFormat("%s/partitions/%05u", cluster_.node_dir(node), p);
      auto ro = partition::ReadOnlyPartition::Open(dir);
      ASSERT_OK(ro) << why;
      auto matches = [&](const Contents& want) {
        auto n = (*ro)->CountKeys();
        if (!n.ok() || *n != want.size()) return false;
        for (const auto& [k, v] : want) {
          auto got = (*ro)->Get(k);
          if (!got.ok() || *got != v) return false;
        }
        return true;
      };
      const bool old_state = matches(before.at(p));
      const bool new_state = matches(after.at(p));
      EXPECT_TRUE(old_state || new_state)
          << why << ": partition " << p
          << " on disk is neither the old nor the restored state";
    }
  }

  // Restarts every node with each download stream throttled (slow
  // restores, to strike while one runs).
  void SlowDownloads() {
    for (int i = 0; i < kNodes; ++i) {
      ASSERT_OK(cluster_.StopNode(i, SIGTERM));
      ASSERT_OK(cluster_.StartNode(i, {"--publish-stream-mibps", "0.5"}));
    }
    ASSERT_OK(cluster_.WaitForLeaders(absl::Seconds(30)));
  }

  // Waits (bounded) until a partition of the job is running on a node.
  bool WaitForRunning(const std::string& id) {
    return PollUntil(
        [&] {
          auto s = cluster_.GetSnapshot(id);
          if (!s.ok()) return false;
          for (const auto& t : s->partitions()) {
            if (t.state() == PARTITION_TASK_STATE_RUNNING) return true;
          }
          return false;
        },
        absl::Seconds(30));
  }

  testing::TempDir tmp_;
  std::unique_ptr<testing::S3TestServer> s3_;
  testing::LocalCluster cluster_{{SHUTTER_CONTROLLER_BIN, SHUTTER_NODE_BIN,
                                  tmp_.path(), kNodes, kPerNode, 2}};
  bool started_ = false;
  std::map<uint32_t, Contents> model_;
  std::map<uint32_t, uint64_t> applied_;
  std::map<uint32_t, uint64_t> epoch_;
};

TEST_P(RestoreTest, RoundTripRestoresExactlyTheSnapshotAndFencesTheOldEpoch) {
  WriteRound(0);
  WriteRound(1);
  const std::string id = Snapshot();
  const std::map<uint32_t, Contents> at_snapshot = model_;
  const std::map<uint32_t, uint64_t> applied_at_snapshot = applied_;
  WriteRound(2);  // overwrites, deletes and new keys after the snapshot
  const std::map<uint32_t, uint64_t> old_epoch = epoch_;

  // The plan, and nothing recorded by it.
  std::string out, err;
  ASSERT_EQ(
      Ctl({"-o", "json", "snapshots", "restore", id, "--dry-run"}, &out, &err),
      0)
      << err;
  auto plan = Json<RestoreSnapshotResponse>(out);
  EXPECT_TRUE(plan.restore_id().empty());
  EXPECT_EQ(plan.plan().partitions(), static_cast<uint32_t>(kNodes * kPerNode));
  ASSERT_EQ(plan.plan().nodes_size(), kNodes);
  for (const auto& n : plan.plan().nodes()) {
    EXPECT_EQ(n.partition_ids_size(), kPerNode);
    EXPECT_EQ(n.concurrency(), 2u);
    EXPECT_GT(n.bytes(), 60u * 200);
  }
  ASSERT_EQ(Ctl({"snapshots", "restore", id, "--dry-run"}, &out, &err), 0);
  EXPECT_TRUE(absl::StrContains(out, "Would restore snapshot " + id)) << out;
  ASSERT_EQ(Ctl({"-o", "json", "restores", "list"}, &out, &err), 0);
  EXPECT_TRUE(Json<ListSnapshotsResponse>(out).snapshots().empty()) << out;
  for (uint32_t p = 0; p < 2; ++p) {
    ExpectContents(p, model_[p], "after a dry run");
  }

  const GetSnapshotResponse done = RestoreAndWait(id, 0);
  EXPECT_EQ(done.snapshot().state(), SNAPSHOT_STATE_COMMITTED)
      << done.snapshot().error();
  EXPECT_EQ(done.snapshot().type(), JOB_TYPE_RESTORE);
  EXPECT_EQ(done.snapshot().source_snapshot_id(), id);
  ASSERT_EQ(done.snapshot().partitions_size(), kNodes * kPerNode);
  for (const auto& t : done.snapshot().partitions()) {
    EXPECT_EQ(t.applied_index(), applied_at_snapshot.at(t.partition_id()));
    EXPECT_GT(t.leader_epoch(), old_epoch.at(t.partition_id()));
  }
  // For people, a restored partition reads RESTORED, not PUBLISHED.
  ASSERT_EQ(Ctl({"restores", "show", done.snapshot().snapshot_id(), "--all"},
                &out, &err),
            0)
      << err;
  EXPECT_TRUE(absl::StrContains(out, " RESTORED ")) << out;
  EXPECT_FALSE(absl::StrContains(out, "PUBLISHED")) << out;
  // Listed as a restore, not as a snapshot.
  ASSERT_EQ(Ctl({"-o", "json", "restores", "list"}, &out, &err), 0);
  ASSERT_EQ(Json<ListSnapshotsResponse>(out).snapshots_size(), 1);
  ASSERT_EQ(Ctl({"-o", "json", "snapshots", "list"}, &out, &err), 0);
  EXPECT_EQ(Json<ListSnapshotsResponse>(out).snapshots_size(), 1);

  for (uint32_t p = 0; p < static_cast<uint32_t>(cluster_.partitions()); ++p) {
    ExpectContents(p, at_snapshot.at(p), "after the restore");
    // A writer of the old epoch is fenced...
    WriteRequest batch;
    auto* put = batch.add_mutations()->mutable_put();
    put->set_key("after");
    put->set_value("restore");
    auto stale = Apply(p, batch, old_epoch.at(p));
    EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition)
        << stale.status();
    EXPECT_TRUE(absl::StrContains(stale.status().message(), "stale epoch"))
        << stale.status();
    // ...one of the new epoch continues from the snapshot's applied index.
    auto fresh = Apply(p, batch, done.snapshot().partitions(p).leader_epoch());
    ASSERT_OK(fresh);
    EXPECT_EQ(fresh->applied_index(), applied_at_snapshot.at(p) + 1);
  }
  // A snapshot taken afterwards sees the restored state.
  const std::string later = Snapshot();
  auto repo = cluster_.OpenRepository();
  ASSERT_OK(repo);
  auto cm = (*repo)->ReadClusterManifest(later);
  ASSERT_OK(cm);
  for (const auto& e : cm->partitions()) {
    EXPECT_EQ(e.applied_index(), applied_at_snapshot.at(e.partition_id()) + 1);
  }

  // Bad input: clear errors, nothing started.
  EXPECT_EQ(
      Ctl({"snapshots", "restore", "20990101T000000.000Z-none"}, &out, &err),
      1);
  EXPECT_TRUE(absl::StrContains(err, "NOT_FOUND")) << err;
  EXPECT_EQ(
      Ctl({"snapshots", "restore", id, "--partitions", "0,99"}, &out, &err), 1);
  EXPECT_TRUE(absl::StrContains(err, "does not contain partition(s) 99"))
      << err;
  EXPECT_EQ(Ctl({"snapshots", "restore", id, "--partitions", "x"}, &out, &err),
            2);
  EXPECT_EQ(
      Ctl({"snapshots", "restore", done.snapshot().snapshot_id()}, &out, &err),
      1);
  EXPECT_TRUE(absl::StrContains(err, "is a restore job")) << err;
  EXPECT_EQ(
      Ctl({"snapshots", "delete", done.snapshot().snapshot_id()}, &out, &err),
      1);
  ASSERT_EQ(Ctl({"-o", "json", "restores", "list"}, &out, &err), 0);
  EXPECT_EQ(Json<ListSnapshotsResponse>(out).snapshots_size(), 1);
}

TEST_P(RestoreTest, NodeKilledAtEachPhaseLeavesOldOrNewAndTheRestoreFinishes) {
  WriteRound(0);
  const std::string id = Snapshot();
  const std::map<uint32_t, Contents> at_snapshot = model_;
  int round = 1;
  for (const char* point :
       {"restore-fetching", "restore-assembled", "restore-swapped"}) {
    SCOPED_TRACE(point);
    // Node 0 kills itself at `point` of its first restore.
    cluster_.SetNodeEnv(0, {absl::StrCat("SHUTTER_TEST_KILL_AT=", point)});
    ASSERT_OK(cluster_.StopNode(0, SIGTERM));
    ASSERT_OK(cluster_.StartNode(0));
    ASSERT_OK(cluster_.WaitForLeaders(absl::Seconds(30)));
    WriteRound(round++);
    const std::map<uint32_t, Contents> before = model_;

    std::string out, err;
    ASSERT_EQ(Ctl({"snapshots", "restore", id}, &out, &err), 0) << err;
    const std::string restore_id(absl::StripAsciiWhitespace(out));
    ASSERT_TRUE(
        PollUntil([&] { return cluster_.NodeExited(0); }, absl::Seconds(60)))
        << "node 0 did not die at " << point;
    ExpectOldOrNewOnDisk(0, before, at_snapshot, point);

    cluster_.SetNodeEnv(0, {});
    ASSERT_OK(cluster_.StartNode(0));
    // The controller waited for the node and finishes the job.
    auto job = cluster_.WaitForSnapshot(restore_id, absl::Seconds(90));
    ASSERT_OK(job);
    EXPECT_EQ(job->state(), SNAPSHOT_STATE_COMMITTED) << job->error();
    for (uint32_t p = 0; p < static_cast<uint32_t>(cluster_.partitions());
         ++p) {
      ExpectContents(p, at_snapshot.at(p), point);
      EXPECT_FALSE(fs::Exists(absl::StrFormat(
          "%s/partitions/.restore-%05u", cluster_.node_dir(NodeOf(p)), p)));
    }
    model_ = at_snapshot;
  }
}

TEST_P(RestoreTest, CorruptObjectFailsNamingItAndKeepsTheOldStore) {
  WriteRound(0);
  const std::string id = Snapshot();
  WriteRound(1);
  const std::map<uint32_t, Contents> before = model_;
  auto repo = cluster_.OpenRepository();
  ASSERT_OK(repo);
  auto pm = (*repo)->ReadPartitionManifest(id, 0);
  ASSERT_OK(pm);
  std::string key;
  for (const auto& f : pm->files()) {
    if (absl::EndsWith(f.name(), ".sst")) key = f.object_key();
  }
  ASSERT_FALSE(key.empty());
  auto original = (*repo)->blob_store()->Get(key);
  ASSERT_OK(original);
  std::string bad = *original;
  bad[bad.size() / 2] ^= 0x5a;
  ASSERT_OK((*repo)->blob_store()->Put(key, bad, {}));

  const GetSnapshotResponse failed = RestoreAndWait(id, 1, "0");
  EXPECT_EQ(failed.snapshot().state(), SNAPSHOT_STATE_FAILED);
  ASSERT_EQ(failed.snapshot().partitions_size(), 1);
  EXPECT_TRUE(
      absl::StrContains(failed.snapshot().partitions(0).last_error(), key))
      << failed.snapshot().partitions(0).last_error();
  EXPECT_EQ(failed.snapshot().partitions(0).attempts(), 1u)
      << "a corrupt object is not retried";
  ExpectContents(0, before.at(0), "after a failed restore");
  EXPECT_FALSE(fs::Exists(
      absl::StrFormat("%s/partitions/.restore-00000", cluster_.node_dir(0))));
  // Writable again, at the same epoch.
  WriteRequest batch;
  auto* put = batch.add_mutations()->mutable_put();
  put->set_key("still");
  put->set_value("writable");
  EXPECT_OK(Apply(0, batch, epoch_.at(0)));

  // The other partitions restore; a PARTIAL job when some fail.
  ASSERT_OK((*repo)->blob_store()->Put(key, *original, {}));
  const GetSnapshotResponse ok = RestoreAndWait(id, 0, "1,3");
  EXPECT_EQ(ok.snapshot().state(), SNAPSHOT_STATE_COMMITTED);
}

TEST_P(RestoreTest, ControllerKilledMidRestoreResumesAndFinishes) {
  // Slow restores: every download stream is throttled.
  ASSERT_NO_FATAL_FAILURE(SlowDownloads());
  WriteRound(0);
  WriteRound(1);
  const std::string id = Snapshot();
  const std::map<uint32_t, Contents> at_snapshot = model_;
  WriteRound(2);

  std::string out, err;
  ASSERT_EQ(Ctl({"snapshots", "restore", id}, &out, &err), 0) << err;
  const std::string restore_id(absl::StripAsciiWhitespace(out));
  // Kill the controller once the job is under way, not finished.
  ASSERT_TRUE(WaitForRunning(restore_id));
  ASSERT_OK(cluster_.StopController(SIGKILL));
  cluster_.CloseChannels();
  ASSERT_OK(cluster_.StartController());
  auto job = cluster_.WaitForSnapshot(restore_id, absl::Seconds(120));
  ASSERT_OK(job);
  EXPECT_EQ(job->state(), SNAPSHOT_STATE_COMMITTED) << job->error();
  EXPECT_EQ(job->type(), JOB_TYPE_RESTORE);
  for (uint32_t p = 0; p < static_cast<uint32_t>(cluster_.partitions()); ++p) {
    ExpectContents(p, at_snapshot.at(p), "after a controller restart");
  }
}

// The controller's view agrees with a restore it reports done: right
// after `restore --wait` returns, ListPartitions shows every partition at
// the restore's new epoch and at least the snapshot's applied index (with
// writers running throughout), and a snapshot created at once is never
// refused for a stale epoch. Repeated to catch a race with heartbeats.
TEST_P(RestoreTest, PartitionsShowTheRestoreAsSoonAsItCommits) {
  absl::Notification stop;
  std::thread writer([&] {
    // Unfenced writes to every partition; refused while a partition is
    // being restored, accepted again after its swap. Rounds at least 2 ms
    // apart, like a client's steady load (the sync writes pace it about
    // as much).
    for (int i = 0; !stop.WaitForNotificationWithTimeout(absl::Milliseconds(2));
         ++i) {
      for (uint32_t p = 0; p < static_cast<uint32_t>(cluster_.partitions());
           ++p) {
        WriteRequest batch;
        auto* put = batch.add_mutations()->mutable_put();
        put->set_key(absl::StrCat("w", i % 50));
        put->set_value(absl::StrCat(i));
        Apply(p, batch).IgnoreError();
      }
    }
  });
  for (int round = 0; round < 4; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    const std::string id = Snapshot();
    auto repo = cluster_.OpenRepository();
    ASSERT_OK(repo);
    auto cm = (*repo)->ReadClusterManifest(id);
    ASSERT_OK(cm);
    std::map<uint32_t, uint64_t> applied_at_snapshot;
    for (const auto& e : cm->partitions()) {
      applied_at_snapshot[e.partition_id()] = e.applied_index();
    }
    const GetSnapshotResponse done = RestoreAndWait(id, 0);
    ASSERT_EQ(done.snapshot().state(), SNAPSHOT_STATE_COMMITTED)
        << done.snapshot().error();
    const ListPartitionsResponse now = cluster_.ListPartitions();
    ASSERT_EQ(now.partitions_size(), cluster_.partitions());
    for (const auto& p : now.partitions()) {
      const auto& t = done.snapshot().partitions(p.partition_id());
      EXPECT_EQ(p.leader_epoch(), t.leader_epoch())
          << "partition " << p.partition_id();
      EXPECT_GE(p.applied_index(), applied_at_snapshot.at(p.partition_id()))
          << "partition " << p.partition_id();
    }
    std::string out, err;
    ASSERT_EQ(Ctl({"-o", "json", "snapshots", "create", "--wait"}, &out, &err),
              0)
        << err;
    const auto next = Json<GetSnapshotResponse>(out);
    for (const auto& t : next.snapshot().partitions()) {
      EXPECT_EQ(t.attempts(), 1u)
          << "partition " << t.partition_id() << ": " << t.last_error();
    }
  }
  stop.Notify();
  writer.join();
}

TEST_P(RestoreTest, CancelStopsWhatHasNotSwappedAndKeepsEachPartitionWhole) {
  // Each node swaps in its first restored partition; its later ones wait,
  // checked and assembled, just before the swap until the release file
  // exists. The cancel thus lands with exactly one partition per node
  // swapped, whatever the machine's speed.
  const std::string release = tmp_.Sub("release-restores");
  for (int i = 0; i < kNodes; ++i) {
    cluster_.SetNodeEnv(
        i,
        {absl::StrCat("SHUTTER_TEST_HOLD_AT=restore-assembled:1:", release)});
    ASSERT_OK(cluster_.StopNode(i, SIGTERM));
    ASSERT_OK(cluster_.StartNode(i));
  }
  ASSERT_OK(cluster_.WaitForLeaders(absl::Seconds(30)));
  WriteRound(0);
  WriteRound(1);
  const std::string id = Snapshot();
  const std::map<uint32_t, Contents> at_snapshot = model_;
  WriteRound(2);
  const std::map<uint32_t, Contents> before = model_;

  std::string out, err;
  ASSERT_EQ(Ctl({"snapshots", "restore", id}, &out, &err), 0) << err;
  const std::string restore_id(absl::StripAsciiWhitespace(out));
  // Cancel once one partition per node has been swapped in.
  ASSERT_TRUE(PollUntil(
      [&] {
        auto s = cluster_.GetSnapshot(restore_id);
        if (!s.ok()) return false;
        int published = 0;
        for (const auto& t : s->partitions()) {
          published += t.state() == PARTITION_TASK_STATE_PUBLISHED;
        }
        return published == kNodes;
      },
      absl::Seconds(60)));
  ASSERT_EQ(Ctl({"restores", "cancel", restore_id}, &out, &err), 0) << err;
  EXPECT_TRUE(absl::StrContains(out, "cancelled")) << out;
  EXPECT_TRUE(absl::StrContains(out, "stay restored")) << out;
  // Release the held restores once every node has heard of the cancel:
  // they must then stop before the swap.
  for (int i = 0; i < kNodes; ++i) {
    ASSERT_TRUE(PollUntil(
        [&] {
          auto log = fs::ReadFile(tmp_.Sub(absl::StrCat("node", i, ".log")));
          return log.ok() && absl::StrContains(
                                 *log, absl::StrCat("restores of ", restore_id,
                                                    " cancelled"));
        },
        absl::Seconds(30)))
        << "node " << i << " did not hear of the cancel";
  }
  ASSERT_OK(fs::WriteFileAtomically(release, ""));
  auto job = cluster_.WaitForSnapshot(restore_id, absl::Seconds(60));
  ASSERT_OK(job);
  EXPECT_EQ(job->state(), SNAPSHOT_STATE_CANCELLED);
  // Each partition is whole: restored (its task finished before the
  // cancel reached the node) or untouched, and writable again.
  ASSERT_TRUE(PollUntil(
      [&] {
        auto s = cluster_.GetSnapshot(restore_id);
        return s.ok() && s->rolled_back();
      },
      absl::Seconds(60)));
  // The job says exactly which partitions were restored: a known outcome
  // is never relabelled CANCELLED (an answer that arrived after the cancel
  // included).
  job = cluster_.GetSnapshot(restore_id);
  ASSERT_OK(job);
  std::set<uint32_t> reported;
  for (const auto& t : job->partitions()) {
    if (t.state() == PARTITION_TASK_STATE_PUBLISHED) {
      reported.insert(t.partition_id());
    } else {
      EXPECT_EQ(t.state(), PARTITION_TASK_STATE_CANCELLED)
          << "partition " << t.partition_id();
    }
  }
  std::set<uint32_t> actually_restored;
  int restored = 0;
  for (uint32_t p = 0; p < static_cast<uint32_t>(cluster_.partitions()); ++p) {
    auto got = ScanAll(p);
    ASSERT_OK(got);
    const bool is_new = *got == at_snapshot.at(p);
    const bool is_old = *got == before.at(p);
    EXPECT_TRUE(is_new || is_old) << "partition " << p << " is neither";
    if (is_new) actually_restored.insert(p);
    restored += is_new;
    WriteRequest batch;
    auto* put = batch.add_mutations()->mutable_put();
    put->set_key("after-cancel");
    put->set_value("x");
    EXPECT_OK(Apply(p, batch));
  }
  EXPECT_EQ(restored, kNodes) << "one partition per node was let through";
  EXPECT_EQ(reported, actually_restored);
  // What an operator reads: the count and which partitions.
  ASSERT_EQ(Ctl({"restores", "show", restore_id}, &out, &err), 0) << err;
  EXPECT_TRUE(absl::StrContains(
      out, absl::StrCat(restored, "/", cluster_.partitions(), " restored")))
      << out;
  std::vector<uint32_t> ids(actually_restored.begin(), actually_restored.end());
  EXPECT_TRUE(
      absl::StrContains(out, absl::StrCat("Restored:   ", FormatIdList(ids))))
      << out;
  EXPECT_TRUE(absl::StrContains(out, "Untouched:  ")) << out;
}

// Under AddressSanitizer (scripts/test.sh's clang tree) only the "s3"
// variant runs; the release tree runs both. The two differ only in the
// repository store: the controller's and the nodes' side of each scenario
// is the same code on either. The sanitizers still see the directory
// store read and written in the unit tests (RepositoryTest, including its
// GC; PartitionRestorerTest; CheckpointTakerTest) and in fault_test's
// fs_tls and fs_etcd variants. Leaving "fs" out saves about 80 s of test
// time (about 20 s of the suite) on the two cores the sanitizer tests
// saturate.
#ifdef SHUTTER_TEST_UNDER_ASAN
#define SHUTTER_RESTORE_TEST_STORES "s3"
#else
#define SHUTTER_RESTORE_TEST_STORES "fs", "s3"
#endif
INSTANTIATE_TEST_SUITE_P(Stores, RestoreTest,
                         ::testing::Values(SHUTTER_RESTORE_TEST_STORES),
                         [](const auto& info) { return info.param; });

}  // namespace restore_test
}  // namespace shutter
