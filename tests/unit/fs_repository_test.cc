#include "snapshot/fs_repository.h"

#include <filesystem>
#include <fstream>

#include "common/fs.h"
#include "gtest/gtest.h"
#include "snapshot/manifest.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter::snapshot {
namespace {

using ::shutter::testing::StatusIs;
namespace stdfs = std::filesystem;

shutter::v1::PartitionManifest Header(uint32_t partition) {
  shutter::v1::PartitionManifest h;
  h.set_snapshot_id("snap-1");
  h.set_partition_id(partition);
  h.set_node_id("n1");
  h.set_leader_epoch(2);
  h.set_applied_index(10);
  return h;
}

std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : stdfs::directory_iterator(dir)) {
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

class FsRepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = FsRepository::Open(tmp_.Sub("repo"));
    ASSERT_OK(r);
    repo_ = std::move(r).value();
    src_ = tmp_.Sub("src");
    stdfs::create_directories(src_);
    std::ofstream(src_ + "/000001.sst") << "hello";
    std::ofstream(src_ + "/CURRENT") << "MANIFEST-000002\n";
  }
  testing::TempDir tmp_;
  std::unique_ptr<FsRepository> repo_;
  std::string src_;
};

TEST_F(FsRepositoryTest, PublishWritesFilesAndManifestAtomically) {
  auto m = repo_->PublishPartition(Header(3), src_);
  ASSERT_OK(m);
  ASSERT_EQ(m->files_size(), 2);
  EXPECT_EQ(m->files(0).name(), "000001.sst");
  EXPECT_EQ(m->files(0).size_bytes(), 5u);
  // sha256("hello")
  EXPECT_EQ(m->files(0).sha256(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
  EXPECT_EQ(m->total_bytes(), 5u + 16u);
  std::string dir = repo_->Abs(Repository::PartitionDir("snap-1", 3));
  EXPECT_EQ(Entries(dir), (std::vector<std::string>{"000001.sst", "CURRENT",
                                                    "MANIFEST.json"}));
  // Nothing temporary is left beside it.
  EXPECT_EQ(Entries(fs::Dirname(dir)), (std::vector<std::string>{"00003"}));
  auto read = repo_->ReadPartitionManifest("snap-1", 3);
  ASSERT_OK(read);
  EXPECT_EQ(read->SerializeAsString(), m->SerializeAsString());
  EXPECT_OK(repo_->VerifyPartition(*read));
}

TEST_F(FsRepositoryTest, SecondPublishIsRejectedAndKeepsTheFirst) {
  ASSERT_OK(repo_->PublishPartition(Header(3), src_));
  std::ofstream(src_ + "/000001.sst") << "different";
  EXPECT_THAT(repo_->PublishPartition(Header(3), src_),
              StatusIs(absl::StatusCode::kAlreadyExists));
  auto read = repo_->ReadPartitionManifest("snap-1", 3);
  ASSERT_OK(read);
  EXPECT_OK(repo_->VerifyPartition(*read));
  std::string parent =
      fs::Dirname(repo_->Abs(Repository::PartitionDir("snap-1", 3)));
  EXPECT_EQ(Entries(parent), (std::vector<std::string>{"00003"}));
}

TEST_F(FsRepositoryTest, FailedPublishLeavesNothingVisible) {
  EXPECT_FALSE(repo_->PublishPartition(Header(4), tmp_.Sub("missing")).ok());
  EXPECT_THAT(repo_->ReadPartitionManifest("snap-1", 4),
              StatusIs(absl::StatusCode::kNotFound));
  std::string parent =
      fs::Dirname(repo_->Abs(Repository::PartitionDir("snap-1", 4)));
  EXPECT_TRUE(!stdfs::exists(parent) || Entries(parent).empty());
}

TEST_F(FsRepositoryTest, RejectsUnsafeSnapshotIds) {
  auto h = Header(1);
  h.set_snapshot_id("../escape");
  EXPECT_THAT(repo_->PublishPartition(h, src_),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(stdfs::exists(tmp_.Sub("escape")));
}

TEST_F(FsRepositoryTest, VerifyNamesTheCorruptFile) {
  auto m = repo_->PublishPartition(Header(5), src_);
  ASSERT_OK(m);
  std::string file =
      repo_->Abs(Repository::PartitionDir("snap-1", 5)) + "/000001.sst";
  std::ofstream(file) << "jello";  // same size, other bytes
  EXPECT_THAT(repo_->VerifyPartition(*m),
              StatusIs(absl::StatusCode::kDataLoss, "000001.sst: sha256"));
  stdfs::remove(file);
  EXPECT_THAT(repo_->VerifyPartition(*m),
              StatusIs(absl::StatusCode::kDataLoss, "missing"));
}

TEST_F(FsRepositoryTest, ClusterManifestIsWrittenOnce) {
  shutter::v1::ClusterManifest cm;
  cm.set_snapshot_id("snap-1");
  cm.set_label("x");
  EXPECT_THAT(repo_->ReadClusterManifest("snap-1"),
              StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK(repo_->CommitClusterManifest(cm));
  EXPECT_THAT(repo_->CommitClusterManifest(cm),
              StatusIs(absl::StatusCode::kAlreadyExists));
  auto back = repo_->ReadClusterManifest("snap-1");
  ASSERT_OK(back);
  EXPECT_EQ(back->label(), "x");
  EXPECT_EQ(back->format_version(), kManifestFormatVersion);
}

TEST(OpenRepositoryTest, AcceptsPathsAndFileUris) {
  testing::TempDir tmp;
  ASSERT_OK(OpenRepository(tmp.Sub("a")));
  ASSERT_OK(OpenRepository("file://" + tmp.Sub("b")));
  EXPECT_THAT(
      OpenRepository("s3://bucket/x"),
      StatusIs(absl::StatusCode::kInvalidArgument, "unsupported scheme"));
  EXPECT_THAT(OpenRepository("file://relative"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace shutter::snapshot
