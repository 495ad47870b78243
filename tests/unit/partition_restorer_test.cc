#include "node/partition_restorer.h"

#include <filesystem>

#include "absl/strings/match.h"
#include "common/error_reason.h"
#include "common/fs.h"
#include "gtest/gtest.h"
#include "node/checkpoint_taker.h"
#include "node/partition_verifier.h"
#include "snapshot/blob_store.h"
#include "snapshot/repository.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter::node {
namespace {

using ::shutter::testing::StatusIs;
using shutter::v1::RestorePartitionRequest;
namespace stdfs = std::filesystem;

// A real NodeHost and directory repository: partition 0 and 1 are led here;
// snapshot "s1" holds partition 0 with keys a=1, b=2 (applied index 2).
class PartitionRestorerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto h = NodeHost::Open({tmp_.Sub("data"), {0, 1}, {0, 1}});
    ASSERT_OK(h);
    host_ = std::move(h).value();
    ASSERT_OK(host_->TakeLeadership());
    auto r = snapshot::OpenRepository(tmp_.Sub("repo"));
    ASSERT_OK(r);
    repo_ = std::move(r).value();
    Put(0, "a", "1");
    Put(0, "b", "2");
    CheckpointTaker::Options t;
    t.node_id = "n1";
    t.staging_dir = tmp_.Sub("data/staging");
    auto taker = CheckpointTaker::Create(t, host_.get(), repo_.get(), &clock_);
    ASSERT_OK(taker);
    (*taker)->SetServing(true);
    shutter::v1::CreateCheckpointRequest c;
    c.set_snapshot_id("s1");
    c.set_partition_id(0);
    c.set_expected_leader_epoch(1);
    ASSERT_OK((*taker)->CreateCheckpointSync(c));
    // After the snapshot: an overwrite, a delete, a new key.
    Put(0, "a", "changed");
    ASSERT_OK(host_->Find(0)->Write(
        {{partition::Mutation::Op::kDelete, "b", ""}}, true));
    Put(0, "c", "3");
  }

  void Put(uint32_t p, const std::string& k, const std::string& v) {
    ASSERT_OK(
        host_->Find(p)->Write({{partition::Mutation::Op::kPut, k, v}}, true));
  }

  std::unique_ptr<PartitionRestorer> Make(
      std::function<void(const char*)> fault = nullptr) {
    PartitionRestorer::Options o;
    o.node_id = "n1";
    o.instance_id = "inst-1";
    o.fault = std::move(fault);
    auto r = PartitionRestorer::Create(o, host_.get(), repo_.get(), &clock_);
    EXPECT_OK(r);
    return std::move(r).value();
  }

  RestorePartitionRequest Req(const std::string& restore_id, uint64_t epoch) {
    RestorePartitionRequest r;
    r.set_restore_id(restore_id);
    r.set_snapshot_id("s1");
    r.set_partition_id(0);
    r.set_expected_leader_epoch(epoch);
    r.set_expected_instance_id("inst-1");
    return r;
  }

  // Flips a byte in the middle of an SST of s1's partition 0 in the
  // repository; says which object, which file, and what it held.
  void CorruptSst(std::string* key, std::string* name, std::string* original) {
    auto pm = repo_->ReadPartitionManifest("s1", 0);
    ASSERT_OK(pm);
    for (const auto& f : pm->files()) {
      if (absl::EndsWith(f.name(), ".sst")) {
        *key = f.object_key();
        *name = f.name();
      }
    }
    ASSERT_FALSE(key->empty());
    auto bytes = repo_->blob_store()->Get(*key);
    ASSERT_OK(bytes);
    *original = *bytes;
    (*bytes)[bytes->size() / 2] ^= 1;
    ASSERT_OK(repo_->blob_store()->Put(*key, *bytes, {}));
  }

  std::string Get(uint32_t p, const std::string& k) {
    auto v = host_->Find(p)->Get(k);
    return v.ok() ? *v : "<absent>";
  }

  testing::TempDir tmp_;
  FakeClock clock_;
  std::unique_ptr<NodeHost> host_;
  std::unique_ptr<snapshot::Repository> repo_;
};

TEST_F(PartitionRestorerTest, RestoresTheSnapshotStateAndRaisesTheEpoch) {
  // While the restore runs (here: files fetched and checked, before the
  // swap), writes to it are refused as retryable, reads still served,
  // and the other partition is untouched.
  absl::Status write_during;
  std::string read_during;
  absl::Status other_write;
  auto restorer = Make([&](const char* point) {
    if (std::string(point) != "restore-assembled") return;
    write_during =
        host_->Find(0)
            ->Write({{partition::Mutation::Op::kPut, "x", "y"}}, true)
            .status();
    read_during = Get(0, "a");
    other_write = host_->Find(1)
                      ->Write({{partition::Mutation::Op::kPut, "x", "y"}}, true)
                      .status();
  });
  auto r = restorer->RestoreSync(Req("r1", 1));
  ASSERT_OK(r);
  EXPECT_THAT(write_during, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_TRUE(absl::StrContains(write_during.message(), "being restored"))
      << write_during;
  EXPECT_EQ(read_during, "changed");
  EXPECT_OK(other_write);

  EXPECT_EQ(r->manifest().applied_index(), 2u);
  EXPECT_EQ(r->leader_epoch(), 2u);  // above the live store's 1
  EXPECT_FALSE(r->already_restored());
  EXPECT_EQ(Get(0, "a"), "1");
  EXPECT_EQ(Get(0, "b"), "2");
  EXPECT_EQ(Get(0, "c"), "<absent>");
  auto meta = host_->Find(0)->meta();
  EXPECT_EQ(meta.applied_index, 2u);
  EXPECT_EQ(meta.leader_epoch, 2u);
  EXPECT_TRUE(absl::StartsWith(meta.restored_by, "r1 s1 2"));
  EXPECT_FALSE(fs::Exists(host_->RestoreStagingPath(0)));
  // Writable again at the new epoch only.
  EXPECT_THAT(host_->Find(0)
                  ->Write({{partition::Mutation::Op::kPut, "d", "4"}}, true, 1)
                  .status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  auto next = host_->Find(0)->Write({{partition::Mutation::Op::kPut, "d", "4"}},
                                    true, 2);
  ASSERT_OK(next);
  EXPECT_EQ(*next, 3u);

  // A repeat of the same restore (its answer was lost) is answered from
  // the marker even though the epoch moved, and restores nothing again.
  auto again = restorer->RestoreSync(Req("r1", 1));
  ASSERT_OK(again);
  EXPECT_TRUE(again->already_restored());
  EXPECT_EQ(Get(0, "d"), "4");
  // Another restore job at the old epoch is refused, nothing touched.
  EXPECT_EQ(GetErrorReason(restorer->RestoreSync(Req("r2", 1)).status()),
            ErrorReason::kStaleEpoch);
  EXPECT_EQ(restorer->GetStats().restored, 1u);
}

TEST_F(PartitionRestorerTest, CorruptOrCancelledKeepsTheOldStoreWritable) {
  std::string key, name, original;
  ASSERT_NO_FATAL_FAILURE(CorruptSst(&key, &name, &original));
  auto restorer = Make();
  auto r = restorer->RestoreSync(Req("r1", 1));
  EXPECT_THAT(r.status(), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_TRUE(absl::StrContains(r.status().message(), key)) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), name)) << r.status();
  EXPECT_EQ(GetErrorReason(r.status()), ErrorReason::kCheckpointFailed);
  EXPECT_EQ(Get(0, "a"), "changed");
  EXPECT_FALSE(fs::Exists(host_->RestoreStagingPath(0)));
  Put(0, "after", "failure");  // writes allowed again

  // Cancelled before its swap: CANCELLED, old store kept.
  ASSERT_OK(repo_->blob_store()->Put(key, original, {}));
  // Cancelled while its files are fetched.
  std::unique_ptr<PartitionRestorer> cancelling;
  cancelling = Make([&](const char* point) {
    if (std::string(point) == "restore-fetching") cancelling->Cancel("r3");
  });
  auto c = cancelling->RestoreSync(Req("r3", 1));
  EXPECT_EQ(GetErrorReason(c.status()), ErrorReason::kCancelled);
  EXPECT_EQ(Get(0, "a"), "changed");
  Put(0, "after", "cancel");
}

TEST_F(PartitionRestorerTest, OpenSweepsWhatAnInterruptedRestoreLeft) {
  // A crash before the exchange leaves staging next to the live store; a
  // crash in the two-rename fallback leaves the live store set aside.
  const std::string live = host_->LivePath(0);
  const std::string staging = host_->RestoreStagingPath(0);
  host_.reset();
  stdfs::create_directories(staging + "/junk");
  stdfs::rename(live, live + ".aside");
  auto h = NodeHost::Open({tmp_.Sub("data"), {0, 1}, {0, 1}});
  ASSERT_OK(h);
  host_ = std::move(h).value();
  EXPECT_FALSE(fs::Exists(staging));
  EXPECT_FALSE(fs::Exists(live + ".aside"));
  EXPECT_EQ(Get(0, "a"), "changed");  // the old store, put back
  EXPECT_EQ(Get(0, "c"), "3");
}

TEST_F(PartitionRestorerTest,
       SyncFailureAfterTheSwapLeavesTheRestoredStoreLiveAndFenced) {
  // Once the directories are exchanged the restored store is the live one:
  // a failed directory sync must not leave the slot empty (the partition
  // unavailable until a restart), nor the new store at the old epoch.
  host_.reset();
  auto h = NodeHost::Open({tmp_.Sub("data"), {0, 1}, {0, 1}});
  ASSERT_OK(h);
  host_ = std::move(h).value();
  int syncs = 0;
  host_->SetSyncDirAfterSwapForTesting([&](const std::string&) {
    ++syncs;
    return absl::InternalError("injected: fsync failed");
  });
  ASSERT_OK(host_->TakeLeadership());  // epoch 2
  auto restorer = Make();
  auto r = restorer->RestoreSync(Req("r1", 2));
  EXPECT_EQ(syncs, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(
      absl::StrContains(r.status().message(), "the restored store is live"))
      << r.status();
  // Served, holding the snapshot, fenced above the old epoch.
  EXPECT_EQ(Get(0, "a"), "1");
  EXPECT_EQ(Get(0, "c"), "<absent>");
  EXPECT_EQ(host_->Find(0)->meta().leader_epoch, 3u);
  EXPECT_THAT(host_->Find(0)
                  ->Write({{partition::Mutation::Op::kPut, "d", "4"}}, true, 2)
                  .status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(host_->Find(0)->Write({{partition::Mutation::Op::kPut, "d", "4"}},
                                  true, 3));
  // The controller's retry is answered from the marker.
  auto again = restorer->RestoreSync(Req("r1", 2));
  ASSERT_OK(again);
  EXPECT_TRUE(again->already_restored());
  EXPECT_EQ(again->leader_epoch(), 3u);
}

TEST_F(PartitionRestorerTest,
       RestoredStoreThatDoesNotOpenIsSwappedBackForTheOld) {
  // Right after the exchange the new store is damaged (its CURRENT file):
  // the old store goes back into place and serves; nothing is left empty.
  auto restorer = Make([&](const char* point) {
    if (std::string(point) != "restore-swapped") return;
    ASSERT_OK(fs::WriteFileAtomically(host_->LivePath(0) + "/CURRENT",
                                      "MANIFEST-garbage\n"));
  });
  auto r = restorer->RestoreSync(Req("r1", 1));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StrContains(r.status().message(), "the old store is back"))
      << r.status();
  EXPECT_EQ(Get(0, "a"), "changed");
  EXPECT_EQ(Get(0, "c"), "3");
  EXPECT_FALSE(fs::Exists(host_->RestoreStagingPath(0)));
  Put(0, "after", "failure");
}

// PartitionVerifier over the same fixture: snapshot s1 holds partition 0
// (keys a, b; applied index 2).
class PartitionVerifierTest : public PartitionRestorerTest {
 protected:
  std::unique_ptr<PartitionVerifier> MakeVerifier() {
    PartitionVerifier::Options o;
    o.node_id = "n1";
    o.instance_id = "inst-1";
    o.scratch_dir = tmp_.Sub("data/staging/verify");
    auto v = PartitionVerifier::Create(o, repo_.get(), &clock_);
    EXPECT_OK(v);
    return std::move(v).value();
  }
  static shutter::v1::VerifyPartitionRequest VReq(bool deep,
                                                  uint64_t applied = 2) {
    shutter::v1::VerifyPartitionRequest r;
    r.set_verify_id("v1");
    r.set_snapshot_id("s1");
    r.set_partition_id(0);
    r.set_deep(deep);
    r.set_expected_applied_index(applied);
    r.set_expected_instance_id("inst-1");
    return r;
  }
};

TEST_F(PartitionVerifierTest, ShallowAndDeepPassOnAnIntactCheckpoint) {
  auto v = MakeVerifier();
  auto shallow = v->VerifySync(VReq(false));
  ASSERT_OK(shallow);
  EXPECT_GT(shallow->files_checked(), 0u);
  EXPECT_GT(shallow->bytes_checked(), 0u);
  EXPECT_EQ(shallow->keys_scanned(), 0u);
  EXPECT_EQ(shallow->manifest().applied_index(), 2u);
  auto deep = v->VerifySync(VReq(true));
  ASSERT_OK(deep);
  EXPECT_EQ(deep->keys_scanned(), 2u);  // a and b
  // The scratch copy is gone; the live store was never touched.
  EXPECT_TRUE(stdfs::is_empty(tmp_.Sub("data/staging/verify")));
  EXPECT_EQ(Get(0, "a"), "changed");
  EXPECT_EQ(v->GetStats().succeeded, 2u);
}

TEST_F(PartitionVerifierTest, ProblemsNameThePartitionAndTheFile) {
  auto v = MakeVerifier();
  // The cluster manifest and the partition's disagree.
  auto wrong = v->VerifySync(VReq(false, 7));
  EXPECT_THAT(wrong.status(), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_TRUE(absl::StrContains(wrong.status().message(), "partition 0"))
      << wrong.status();
  EXPECT_EQ(GetErrorReason(wrong.status()), ErrorReason::kCheckpointFailed);
  // No such partition in the snapshot.
  auto req = VReq(false);
  req.set_partition_id(1);
  EXPECT_THAT(v->VerifySync(req).status(),
              StatusIs(absl::StatusCode::kNotFound));
  // A corrupt object: both kinds find it, naming the file.
  std::string key, name, original;
  ASSERT_NO_FATAL_FAILURE(CorruptSst(&key, &name, &original));
  for (bool deep : {false, true}) {
    auto r = v->VerifySync(VReq(deep));
    EXPECT_THAT(r.status(), StatusIs(absl::StatusCode::kDataLoss)) << deep;
    EXPECT_TRUE(absl::StrContains(r.status().message(), name)) << r.status();
    EXPECT_EQ(GetErrorReason(r.status()), ErrorReason::kCheckpointFailed);
  }
  EXPECT_TRUE(stdfs::is_empty(tmp_.Sub("data/staging/verify")));
  // Cancelled: refused from then on.
  v->Cancel("v1");
  ASSERT_OK(repo_->blob_store()->Put(key, original, {}));
  EXPECT_EQ(GetErrorReason(v->VerifySync(VReq(false)).status()),
            ErrorReason::kCancelled);
  // Another incarnation's request is refused.
  req = VReq(false);
  req.set_verify_id("v2");
  req.set_expected_instance_id("someone-else");
  EXPECT_FALSE(v->VerifySync(req).ok());
}

}  // namespace
}  // namespace shutter::node
