// Repository v2 end to end, against a directory and against a real
// S3-protocol server (moto_server): incremental snapshots share their
// unchanged SSTs, retention deletes old snapshots after each commit, GC
// frees what no snapshot references, and what stays restores the data
// exactly as written. All through real daemons and shutterctl.
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fs.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "partition/partition_store.h"
#include "shutter/v1/admin.pb.h"
#include "snapshot/blob_store.h"
#include "snapshot/repository.h"
#include "testing/binaries.h"
#include "testing/local_cluster.h"
#include "testing/process.h"
#include "testing/s3_server.h"
#include "testing/sanitizers.h"
#include "testing/shutterctl.h"
#include "testing/snapshot_checks.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter {
namespace retention_test {

using namespace shutter::v1;  // NOLINT
using testing::PollUntil;
using testing::RunCommand;

constexpr int kNodes = 2;
constexpr int kPerNode = 2;
constexpr int kKeys = 1000;

class RetentionTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "s3") {
      auto s3 = testing::StartS3For(cluster_, tmp_.Sub("s3"), "shutter");
      SHUTTER_S3_OR_SKIP(s3);
      s3_ = *std::move(s3);
    }
    // Keep the newest two committed snapshots; collect at once.
    ASSERT_OK(cluster_.StartController(
        {"--retention-keep-last", "2", "--gc-grace", "0s"}));
    ASSERT_OK(cluster_.StartAllNodes());
    ASSERT_OK(cluster_.WaitForLeaders(absl::Seconds(30)));
    started_ = true;
  }
  void TearDown() override {
    if (!started_) return;
    if (HasFailure()) {
      auto log = fs::ReadFile(tmp_.Sub("controller.log"));
      if (log.ok()) std::cerr << "controller log:\n" << *log;
    }
    cluster_.CloseChannels();
    cluster_.StopAllNodes();
    cluster_.StopController(SIGTERM).IgnoreError();
  }

  int Ctl(std::vector<std::string> args, std::string* out, std::string* err) {
    return testing::RunShutterctl(cluster_, std::move(args), out, err);
  }
  template <typename M>
  M CtlJson(std::vector<std::string> args) {
    args.insert(args.begin(), {"-o", "json"});
    std::string out, err;
    EXPECT_EQ(Ctl(args, &out, &err), 0) << err;
    return testing::FromJson<M>(out);
  }

  // Writes `keys` keys (values depend on `round`) into every partition,
  // remembering what each key holds.
  void WriteRound(int round, int keys) {
    for (int p = 0; p < cluster_.partitions(); ++p) {
      std::vector<std::pair<std::string, std::string>> kvs;
      std::mt19937 rng(round * 100 + p);
      for (int i = 0; i < keys; ++i) {
        const int k = round == 0 ? i : static_cast<int>(rng() % kKeys);
        std::string key = absl::StrFormat("key-%05d", k);
        // Incompressible, like real data: 4 KiB of pseudo-random bytes.
        std::string value = absl::StrFormat("r%d-p%d-k%d-", round, p, k);
        while (value.size() < 4096) value.push_back(static_cast<char>(rng()));
        expected_[p][key] = value;
        kvs.emplace_back(key, value);
      }
      ASSERT_OK(cluster_.Write(p, kvs));
    }
  }

  std::string Snapshot() {
    std::string out, err;
    EXPECT_EQ(Ctl({"-o", "json", "snapshots", "create", "--wait"}, &out, &err),
              0)
        << err;
    GetSnapshotResponse shown;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(out, &shown).ok())
        << out;
    EXPECT_EQ(shown.snapshot().state(), SNAPSHOT_STATE_COMMITTED)
        << shown.snapshot().error();
    return shown.snapshot().snapshot_id();
  }

  void ReadWithAwsCli(const std::string& id, const snapshot::Repository& repo) {
    std::string aws;
    for (const char* dir : {"/usr/bin", "/usr/local/bin"}) {
      if (fs::Exists(std::string(dir) + "/aws"))
        aws = std::string(dir) + "/aws";
    }
    if (const char* home = getenv("HOME"); aws.empty() && home != nullptr) {
      const std::string shim = std::string(home) + "/.pyenv/shims/aws";
      if (fs::Exists(shim)) aws = shim;
    }
    if (aws.empty()) {
      std::cerr << "note: no aws CLI here; the independent S3 read is "
                   "skipped\n";
      return;
    }
    // s3://<bucket>/<prefix>
    const std::string uri = cluster_.repository();
    const std::string bucket = uri.substr(5, uri.find('/', 5) - 5);
    const std::string prefix = uri.substr(uri.find('/', 5) + 1);
    const std::vector<std::string> env = {
        "AWS_ACCESS_KEY_ID=shutter-test",
        "AWS_SECRET_ACCESS_KEY=shutter-test-secret",
        "AWS_DEFAULT_REGION=us-east-1"};
    std::string out, err;
    auto rc =
        RunCommand({aws, "--endpoint-url", s3_->endpoint(), "s3", "cp",
                    absl::StrCat("s3://", bucket, "/", prefix, "/snapshots/",
                                 id, "/CLUSTER_MANIFEST.json"),
                    "-"},
                   &out, &err, absl::Seconds(60), env);
    ASSERT_OK(rc);
    ASSERT_EQ(*rc, 0) << err;
    ClusterManifest cm;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out, &cm).ok())
        << out;
    EXPECT_EQ(cm.snapshot_id(), id);
    EXPECT_EQ(cm.partitions_size(), cluster_.partitions());
    auto pm = repo.ReadPartitionManifest(id, 0);
    ASSERT_OK(pm);
    const auto& sst = pm->files(0);
    rc = RunCommand({aws, "--endpoint-url", s3_->endpoint(), "s3api",
                     "head-object", "--bucket", bucket, "--key",
                     absl::StrCat(prefix, "/", sst.object_key()), "--query",
                     "ContentLength"},
                    &out, &err, absl::Seconds(60), env);
    ASSERT_OK(rc);
    ASSERT_EQ(*rc, 0) << err;
    EXPECT_EQ(std::string(absl::StripAsciiWhitespace(out)),
              absl::StrCat(sst.size_bytes()));
  }

  SnapshotState StateOf(const std::string& id) {
    auto s = cluster_.GetSnapshot(id);
    return s.ok() ? s->state() : SNAPSHOT_STATE_UNSPECIFIED;
  }

  testing::TempDir tmp_;
  std::unique_ptr<testing::S3TestServer> s3_;
  testing::LocalCluster cluster_{{SHUTTER_CONTROLLER_BIN, SHUTTER_NODE_BIN,
                                  tmp_.path(), kNodes, kPerNode, 2}};
  bool started_ = false;
  std::map<int, std::map<std::string, std::string>> expected_;
};

TEST_P(RetentionTest, IncrementalSnapshotsRetentionGcAndRestore) {
  WriteRound(0, kKeys);
  const std::string s1 = Snapshot();
  auto st1 = CtlJson<GetRepositoryStatsResponse>({"repository", "stats"});
  EXPECT_EQ(st1.snapshots(), 1u);
  EXPECT_EQ(st1.bytes_shared(), 0u);

  // 1% of the keys change: the next snapshot shares every old SST.
  WriteRound(1, kKeys / 100);
  const std::string s2 = Snapshot();
  auto st2 = CtlJson<GetRepositoryStatsResponse>({"repository", "stats"});
  EXPECT_EQ(st2.snapshots(), 2u);
  EXPECT_GT(st2.bytes_shared(), 0u);
  const uint64_t added = st2.bytes_stored() - st1.bytes_stored();
  EXPECT_LT(added * 10, st1.bytes_stored())
      << "the second snapshot stored " << added << " new bytes";
  EXPECT_GT(st2.logical_bytes(), st2.bytes_stored());

  // A third: retention (keep-last 2) deletes the first after the commit,
  // then collects what only it used.
  WriteRound(2, kKeys / 100);
  const std::string s3 = Snapshot();
  ASSERT_TRUE(PollUntil([&] { return StateOf(s1) == SNAPSHOT_STATE_DELETED; },
                        absl::Seconds(60)));
  auto repo = cluster_.OpenRepository();
  ASSERT_OK(repo);
  EXPECT_THAT((*repo)->ReadClusterManifest(s1),
              testing::StatusIs(absl::StatusCode::kNotFound));
  // GC ran (or runs) after the retention pass: poll until nothing is left
  // to collect, then everything left is referenced.
  ASSERT_TRUE(PollUntil(
      [&] {
        auto dry = CtlJson<CollectGarbageResponse>(
            {"repository", "gc", "--dry-run", "--grace", "0s"});
        return dry.objects_deleted() == 0;
      },
      absl::Seconds(60)));
  auto st3 = CtlJson<GetRepositoryStatsResponse>({"repository", "stats"});
  EXPECT_EQ(st3.snapshots(), 2u);
  EXPECT_EQ(st3.uncommitted_snapshots(), 0u);

  // What stays verifies and restores exactly what was written.
  std::string out, err;
  for (const std::string& id : {s2, s3}) {
    EXPECT_EQ(Ctl({"snapshots", "verify", "--wait", id}, &out, &err), 0)
        << out << err;
  }
  for (int p = 0; p < cluster_.partitions(); ++p) {
    auto pub = testing::CheckPublishedPartition(**repo, s3, p);
    ASSERT_NE(pub.checkpoint, nullptr);
    EXPECT_EQ(*pub.checkpoint->CountKeys(), expected_[p].size());
    for (const auto& [k, v] : expected_[p]) {
      auto got = pub.checkpoint->Get(k);
      ASSERT_OK(got) << k;
      ASSERT_EQ(*got, v) << "partition " << p << " key " << k;
    }
  }

  // An independent reader (the AWS CLI, where installed) sees the same
  // layout: the cluster manifest, and an SST object of the size its
  // partition manifest names.
  if (GetParam() == "s3") ReadWithAwsCli(s3, **repo);

  // Operator commands: the newest is protected, pins hold, prune plans.
  EXPECT_EQ(Ctl({"snapshots", "delete", s3}, &out, &err), 1);
  EXPECT_NE(err.find("newest committed"), std::string::npos) << err;
  ASSERT_EQ(Ctl({"snapshots", "pin", s2}, &out, &err), 0) << err;
  auto plan = CtlJson<ApplyRetentionResponse>(
      {"snapshots", "prune", "--keep-last", "1", "--dry-run"});
  EXPECT_EQ(plan.deleted_size(), 0);
  ASSERT_EQ(plan.kept_size(), 2);
  EXPECT_EQ(plan.kept(1).reason(), "pinned");
  ASSERT_EQ(Ctl({"snapshots", "unpin", s2}, &out, &err), 0) << err;
  auto done = CtlJson<ApplyRetentionResponse>(
      {"snapshots", "prune", "--keep-last", "1"});
  ASSERT_EQ(done.deleted_size(), 1);
  EXPECT_EQ(done.deleted(0), s2);
  // Each deletion was a job of kind delete, naming its snapshot.
  auto deletes = CtlJson<ListSnapshotsResponse>({"deletes", "list"});
  bool found = false;
  for (const auto& d : deletes.snapshots()) {
    if (d.source_snapshot_id() != s2) continue;
    found = true;
    EXPECT_EQ(d.state(), SNAPSHOT_STATE_COMMITTED);
  }
  EXPECT_TRUE(found) << "no delete job for " << s2;
  auto gc =
      CtlJson<CollectGarbageResponse>({"repository", "gc", "--grace", "0s"});
  EXPECT_FALSE(gc.gc_id().empty());
  // The collection was a job of kind gc: listed with its report, not
  // among the snapshots.
  auto gcs = CtlJson<ListSnapshotsResponse>({"gcs", "list"});
  ASSERT_GE(gcs.snapshots_size(), 1);
  EXPECT_EQ(gcs.snapshots(0).snapshot_id(), gc.gc_id());
  EXPECT_EQ(gcs.snapshots(0).state(), SNAPSHOT_STATE_COMMITTED);
  auto gc_job = CtlJson<GetSnapshotResponse>({"gcs", "show", gc.gc_id()});
  EXPECT_EQ(gc_job.snapshot().type(), JOB_TYPE_GC);
  EXPECT_EQ(gc_job.snapshot().gc().objects_deleted(), gc.objects_deleted());
  EXPECT_EQ(gc_job.snapshot().gc().bytes_deleted(), gc.bytes_deleted());
  ASSERT_EQ(Ctl({"gcs", "show", gc.gc_id()}, &out, &err), 0) << err;
  EXPECT_NE(out.find("Deleted:"), std::string::npos) << out;
  const auto snapshots = CtlJson<ListSnapshotsResponse>({"snapshots", "list"});
  for (const auto& s : snapshots.snapshots()) {
    EXPECT_NE(s.snapshot_id(), gc.gc_id());
  }
  EXPECT_EQ(Ctl({"snapshots", "verify", "--wait", s3}, &out, &err), 0)
      << out << err;
  // Bad input: one line, exit 2 for usage, nothing changed.
  EXPECT_EQ(Ctl({"repository", "gc", "--grace", "soon"}, &out, &err), 2);
  EXPECT_NE(err.find("--grace"), std::string::npos) << err;
  EXPECT_EQ(Ctl({"snapshots", "delete", "../x"}, &out, &err), 1);
  EXPECT_NE(err.find("INVALID_ARGUMENT"), std::string::npos) << err;
  EXPECT_EQ(StateOf(s3), SNAPSHOT_STATE_COMMITTED);
}

// Schedules through shutterctl and a real controller: created, listed,
// paused, kept across a controller restart, deleted; bad ones refused with
// one line. (Firing on time, skipping overlaps and recording the last
// success are tested on a fake clock in controller_test.)
TEST_P(RetentionTest, SchedulesAreDurableAndManagedFromTheCli) {
  std::string out, err;
  ASSERT_EQ(Ctl({"schedules", "create", "nightly", "--cron", "0 3 * * *",
                 "--label", "nightly", "--keep-last", "7"},
                &out, &err),
            0)
      << err;
  ASSERT_EQ(Ctl({"schedules", "create", "often", "--every", "15m",
                 "--partitions", "0-1"},
                &out, &err),
            0)
      << err;
  EXPECT_EQ(Ctl({"schedules", "create", "bad", "--every", "5s"}, &out, &err),
            1);
  EXPECT_NE(err.find("minimum, 1m"), std::string::npos) << err;
  EXPECT_EQ(
      Ctl({"schedules", "create", "bad", "--cron", "61 * * * *"}, &out, &err),
      1);
  EXPECT_NE(err.find("minute"), std::string::npos) << err;
  EXPECT_EQ(Ctl({"schedules", "create", "bad"}, &out, &err), 2);
  ASSERT_EQ(Ctl({"schedules", "pause", "often"}, &out, &err), 0) << err;
  ASSERT_OK(cluster_.StopController(SIGTERM));
  ASSERT_OK(cluster_.StartController());
  auto list = CtlJson<ListSchedulesResponse>({"schedules", "list"});
  ASSERT_EQ(list.schedules_size(), 2);
  EXPECT_EQ(list.schedules(0).name(), "nightly");
  EXPECT_EQ(list.schedules(0).cron(), "0 3 * * *");
  EXPECT_EQ(list.schedules(0).retention().keep_last(), 7u);
  EXPECT_FALSE(list.schedules(0).paused());
  const absl::Time next =
      absl::FromUnixMicros(list.schedules(0).next_run_at_micros());
  EXPECT_EQ(absl::ToCivilMinute(next, absl::UTCTimeZone()).hour(), 3);
  EXPECT_EQ(list.schedules(1).name(), "often");
  EXPECT_TRUE(list.schedules(1).paused());
  EXPECT_EQ(list.schedules(1).partition_ids_size(), 2);
  ASSERT_EQ(Ctl({"schedules", "list"}, &out, &err), 0) << err;
  EXPECT_NE(out.find("cron 0 3 * * *"), std::string::npos) << out;
  ASSERT_EQ(Ctl({"schedules", "delete", "often"}, &out, &err), 0) << err;
  EXPECT_EQ(Ctl({"schedules", "resume", "often"}, &out, &err), 1);
  EXPECT_NE(err.find("NOT_FOUND"), std::string::npos) << err;
}

// Disaster drill: every node's data directory is lost; the nodes start
// again with --bootstrap-from latest and hold exactly the newest
// snapshot's data (read back key by key through PartitionData), and the
// cluster takes snapshots again.
TEST_P(RetentionTest, DisasterDrillBootstrapsEveryNodeFromTheLatestSnapshot) {
  WriteRound(0, 200);
  Snapshot();
  WriteRound(1, 20);
  Snapshot();
  const auto at_snapshot = expected_;
  WriteRound(2, 20);  // after the snapshot: lost with the disks
  cluster_.StopAllNodes();
  for (int i = 0; i < kNodes; ++i) {
    std::filesystem::remove_all(cluster_.node_dir(i));
  }
  // New disks are new incarnations: the controller lets them register once
  // it has declared the old ones dead.
  ASSERT_TRUE(PollUntil(
      [&] {
        auto nodes = CtlJson<ListNodesResponse>({"nodes", "list"});
        for (const auto& n : nodes.nodes()) {
          if (n.alive()) return false;
        }
        return nodes.nodes_size() == kNodes;
      },
      absl::Seconds(30)));
  ASSERT_OK(cluster_.StartAllNodes({"--bootstrap-from", "latest"}));
  ASSERT_OK(cluster_.WaitForLeaders(absl::Seconds(30)));
  for (int p = 0; p < cluster_.partitions(); ++p) {
    std::vector<std::string> keys;
    for (const auto& [k, v] : at_snapshot.at(p)) keys.push_back(k);
    auto got = cluster_.Read(p, keys);
    ASSERT_OK(got);
    size_t i = 0;
    for (const auto& [k, v] : at_snapshot.at(p)) {
      ASSERT_TRUE((*got)[i].has_value()) << "partition " << p << " " << k;
      ASSERT_EQ(*(*got)[i], v) << "partition " << p << " " << k;
      ++i;
    }
    // Keys first written after the snapshot are gone with the disks.
    std::vector<std::string> later;
    for (const auto& [k, v] : expected_.at(p)) {
      if (at_snapshot.at(p).count(k) == 0) later.push_back(k);
    }
    if (later.empty()) continue;
    auto absent = cluster_.Read(p, later);
    ASSERT_OK(absent);
    for (const auto& v : *absent) EXPECT_FALSE(v.has_value());
  }
  // A node whose bootstrap cannot succeed says why and exits 2.
  std::vector<std::string> argv = {
      SHUTTER_NODE_BIN,   "--insecure",
      "--node-id",        "late",
      "--data-dir",       tmp_.Sub("late"),
      "--repository",     cluster_.repository(),
      "--partitions",     "0",
      "--controller",     cluster_.controller_address(),
      "--bootstrap-from", "no-such-snapshot"};
  if (s3_) {
    for (const auto& f : s3_->DaemonFlags()) argv.push_back(f);
  }
  std::string out, err;
  auto rc = RunCommand(argv, &out, &err, absl::Seconds(60));
  ASSERT_OK(rc);
  EXPECT_EQ(*rc, 2) << err;
  EXPECT_NE(err.find("--bootstrap-from: bootstrap from snapshot "
                     "no-such-snapshot"),
            std::string::npos)
      << err;
  Snapshot();
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
#define SHUTTER_RETENTION_TEST_STORES "s3"
#else
#define SHUTTER_RETENTION_TEST_STORES "fs", "s3"
#endif
INSTANTIATE_TEST_SUITE_P(Stores, RetentionTest,
                         ::testing::Values(SHUTTER_RETENTION_TEST_STORES),
                         [](const auto& info) { return info.param; });

}  // namespace retention_test
}  // namespace shutter
