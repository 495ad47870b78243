#ifndef SHUTTER_SNAPSHOT_FS_REPOSITORY_H_
#define SHUTTER_SNAPSHOT_FS_REPOSITORY_H_

#include <string>

#include "common/rate_limiter.h"
#include "snapshot/repository.h"

namespace shutter::snapshot {

// A repository in a local (or mounted) directory. Publishing copies each
// file into a hidden temporary directory next to its final place
// (".<partition>.tmp-<random>"), fsyncs the files, writes MANIFEST.json,
// fsyncs the directory and renames it into place, then fsyncs the parent:
// a crash leaves either nothing or the complete partition visible (plus,
// possibly, a hidden temporary directory that a later sweep removes).
// Thread-safe.
class FsRepository : public Repository {
 public:
  // `root` and its identity are created if missing and
  // options.create_if_missing; otherwise a missing root is fine until used
  // (ReadIdentity() is NOT_FOUND, publishing fails).
  static absl::StatusOr<std::unique_ptr<FsRepository>> Open(
      const std::string& root, const RepositoryOptions& options = {});

  absl::StatusOr<shutter::v1::PartitionManifest> PublishPartition(
      const shutter::v1::PartitionManifest& header,
      const std::string& local_dir,
      const std::function<absl::Status()>& precommit = nullptr) override;
  absl::StatusOr<shutter::v1::PartitionManifest> ReadPartitionManifest(
      const std::string& snapshot_id, uint32_t partition_id) const override;
  absl::Status VerifyPartition(
      const shutter::v1::PartitionManifest& manifest) const override;
  absl::Status CommitClusterManifest(
      const shutter::v1::ClusterManifest& manifest) override;
  absl::StatusOr<shutter::v1::ClusterManifest> ReadClusterManifest(
      const std::string& snapshot_id) const override;
  absl::Status DeleteUncommittedSnapshot(
      const std::string& snapshot_id) override;
  std::string Describe() const override { return root_; }
  absl::StatusOr<std::string> ReadIdentity() const override;

  // Absolute path of a repository-relative path.
  std::string Abs(const std::string& rel) const { return root_ + "/" + rel; }

 private:
  FsRepository(std::string root, const RepositoryOptions& options);
  const std::string root_;
  const uint64_t stream_bytes_per_second_;      // 0: unthrottled
  std::unique_ptr<RateLimiter> total_limiter_;  // null: unthrottled
};

}  // namespace shutter::snapshot

#endif  // SHUTTER_SNAPSHOT_FS_REPOSITORY_H_
