#include "node/bootstrap.h"

#include <filesystem>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "node/node_host.h"
#include "partition/partition_store.h"
#include "snapshot/blob_store.h"
#include "snapshot/repository.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter::node {
namespace {

using ::shutter::testing::StatusIs;
namespace stdfs = std::filesystem;

class BootstrapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = snapshot::OpenRepository(tmp_.Sub("repo"));
    ASSERT_OK(r);
    repo_ = std::move(r).value();
  }

  // Publishes partitions [0, n) with `keys` keys each (values depend on
  // `round`) as snapshot `id`, and commits it.
  void Snapshot(const std::string& id, int n, int keys, int round) {
    shutter::v1::ClusterManifest cm;
    cm.set_snapshot_id(id);
    stdfs::create_directories(tmp_.Sub("src-" + id));
    for (int p = 0; p < n; ++p) {
      auto store = partition::PartitionStore::Open(
          {absl::StrFormat("%s/src-%s/%05d", tmp_.path(), id, p),
           static_cast<uint32_t>(p)});
      ASSERT_OK(store);
      ASSERT_OK((*store)->TakeLeadership());
      std::vector<partition::Mutation> batch;
      for (int k = 0; k < keys; ++k) {
        partition::Mutation m;
        m.key = absl::StrFormat("k%04d", k);
        m.value = absl::StrFormat("r%d-p%d-k%d", round, p, k);
        batch.push_back(m);
      }
      ASSERT_OK((*store)->Write(batch, true));
      const std::string ckpt =
          absl::StrFormat("%s/ckpt-%s-%d", tmp_.path(), id, p);
      ASSERT_OK((*store)->CreateCheckpoint(ckpt));
      auto meta = partition::PartitionStore::ReadMeta(ckpt);
      ASSERT_OK(meta);
      shutter::v1::PartitionManifest h;
      h.set_snapshot_id(id);
      h.set_partition_id(p);
      h.set_node_id("n1");
      h.set_leader_epoch(meta->leader_epoch);
      h.set_applied_index(meta->applied_index);
      ASSERT_OK(repo_->PublishPartition(h, ckpt));
      cm.add_partitions()->set_partition_id(p);
    }
    ASSERT_OK(repo_->CommitClusterManifest(cm));
  }

  BootstrapOptions Options(std::vector<uint32_t> partitions,
                           const std::string& from = "latest") {
    BootstrapOptions o;
    o.data_dir = tmp_.Sub("node");
    o.partitions = std::move(partitions);
    o.from = from;
    return o;
  }

  testing::TempDir tmp_;
  std::unique_ptr<snapshot::Repository> repo_;
};

TEST_F(BootstrapTest, RestoresMissingPartitionsFromTheLatestSnapshot) {
  Snapshot("s1", 2, 10, 1);
  Snapshot("s2", 2, 20, 2);  // newer: "latest"
  // Partition 1 already has a local store: it is kept as it is.
  {
    stdfs::create_directories(tmp_.Sub("node/partitions"));
    auto own =
        partition::PartitionStore::Open({tmp_.Sub("node/partitions/00001"), 1});
    ASSERT_OK(own);
  }
  auto report = BootstrapPartitions(Options({0, 1}), *repo_);
  ASSERT_OK(report);
  EXPECT_EQ(report->snapshot_id, "s2");
  EXPECT_EQ(report->restored, std::vector<uint32_t>{0});
  EXPECT_EQ(report->kept, std::vector<uint32_t>{1});
  EXPECT_TRUE(stdfs::is_empty(tmp_.Sub("node/staging")));
  auto host = NodeHost::Open({tmp_.Sub("node"), {0, 1}, {0, 1}});
  ASSERT_OK(host);
  ASSERT_OK((*host)->TakeLeadership());
  auto p0 = (*host)->Find(0);
  EXPECT_EQ(p0->meta().applied_index, 1u);
  EXPECT_GT(p0->meta().leader_epoch, 1u);  // above the snapshot's epoch
  EXPECT_EQ(*p0->Get("k0019"), "r2-p0-k19");
  EXPECT_EQ((*host)->Find(1)->meta().applied_index, 0u);  // kept, empty
  // Nothing to do the second time.
  report = BootstrapPartitions(Options({0, 1}), *repo_);
  ASSERT_OK(report);
  EXPECT_TRUE(report->restored.empty());
}

TEST_F(BootstrapTest, RefusalsNameTheProblemAndLeaveNoStore) {
  EXPECT_THAT(BootstrapPartitions(Options({0}), *repo_),
              StatusIs(absl::StatusCode::kNotFound, "no committed snapshot"));
  Snapshot("s1", 2, 10, 1);
  EXPECT_THAT(BootstrapPartitions(Options({0}, "nope"), *repo_),
              StatusIs(absl::StatusCode::kNotFound, "snapshot nope"));
  EXPECT_THAT(BootstrapPartitions(Options({0}, "../x"), *repo_),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(BootstrapPartitions(Options({5}), *repo_),
              StatusIs(absl::StatusCode::kNotFound,
                       "partition 5 from snapshot s1: the snapshot does not "
                       "contain it"));
  auto o = Options({0});
  o.min_applied_index = 2;
  EXPECT_THAT(BootstrapPartitions(o, *repo_),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "applied index 1 is below the required 2"));
  // A corrupt object: DATA_LOSS naming it, no store, nothing in staging.
  auto m = repo_->ReadPartitionManifest("s1", 0);
  ASSERT_OK(m);
  snapshot::BlobStore::PutOptions plain;
  ASSERT_OK(repo_->blob_store()->Put(m->files(0).object_key(), "junk", plain));
  EXPECT_THAT(BootstrapPartitions(Options({0}), *repo_),
              StatusIs(absl::StatusCode::kDataLoss, m->files(0).name()));
  EXPECT_FALSE(stdfs::exists(tmp_.Sub("node/partitions/00000")));
  EXPECT_TRUE(stdfs::is_empty(tmp_.Sub("node/staging")));
  // The other partition still bootstraps.
  ASSERT_OK(BootstrapPartitions(Options({1}, "s1"), *repo_));
  EXPECT_TRUE(stdfs::exists(tmp_.Sub("node/partitions/00001")));
}

}  // namespace
}  // namespace shutter::node
