#ifndef SHUTTER_SNAPSHOT_BLOB_REPOSITORY_H_
#define SHUTTER_SNAPSHOT_BLOB_REPOSITORY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/rate_limiter.h"
#include "snapshot/blob_store.h"
#include "snapshot/repository.h"

namespace shutter::snapshot {

// The snapshot repository over any BlobStore (layout and protocol: see
// Repository). Thread-safe.
class BlobRepository : public Repository {
 public:
  // Checks (and with options.create_if_missing creates or upgrades) the
  // repository's format and identity.
  static absl::StatusOr<std::unique_ptr<BlobRepository>> Open(
      std::unique_ptr<BlobStore> store, const RepositoryOptions& options);

  absl::StatusOr<shutter::v1::PartitionManifest> PublishPartition(
      const shutter::v1::PartitionManifest& header,
      const std::string& local_dir,
      const std::function<absl::Status()>& precommit = nullptr,
      PublishStats* stats = nullptr) override;
  using Repository::ReadPartitionManifest;
  absl::StatusOr<shutter::v1::PartitionManifest> ReadPartitionManifest(
      const std::string& snapshot_id, uint32_t partition_id,
      const std::string& expected_sha256,
      ManifestDigest* digest) const override;
  absl::StatusOr<uint64_t> PartitionManifestSize(
      const std::string& snapshot_id, uint32_t partition_id) const override;
  absl::Status VerifyPartition(
      const shutter::v1::PartitionManifest& manifest) const override;
  absl::Status DownloadPartition(
      const shutter::v1::PartitionManifest& manifest,
      const std::string& local_dir,
      const DownloadOptions& options = DownloadOptions()) const override;
  absl::Status CommitClusterManifest(
      const shutter::v1::ClusterManifest& manifest) override;
  absl::StatusOr<shutter::v1::ClusterManifest> ReadClusterManifest(
      const std::string& snapshot_id) const override;
  absl::Status DeleteUncommittedSnapshot(
      const std::string& snapshot_id) override;
  absl::Status DeleteSnapshot(const std::string& snapshot_id) override;
  absl::StatusOr<std::vector<SnapshotListing>> ListSnapshots() const override;
  absl::StatusOr<RepositoryStats> GetStats() const override;
  absl::StatusOr<GcReport> CollectGarbage(const GcOptions& options) override;
  absl::StatusOr<int> ReleasePublishLocks(
      const std::function<bool(const PublishLock&)>& dead) override;
  std::string Describe() const override { return store_->Describe(); }
  absl::StatusOr<std::string> ReadIdentity() const override;
  BlobStore* blob_store() const override { return store_.get(); }

  // Key of the content-addressed object holding bytes with this SHA-256.
  static std::string BlobKey(const std::string& sha256);
  // True for files RocksDB never rewrites (SST and blob files), which are
  // stored content-addressed and shared between snapshots.
  static bool IsImmutableFile(const std::string& name);

 private:
  BlobRepository(std::unique_ptr<BlobStore> store,
                 const RepositoryOptions& options);
  absl::Status InitFormat(bool create);
  // Every publish lock with what its body says. Bodies of locks in `known`
  // are not read again (a polling caller keeps it); new ones are added.
  absl::StatusOr<std::vector<PublishLock>> ListPublishLocks(
      absl::flat_hash_map<std::string, PublishLock>* known = nullptr) const;
  // Stores the SST or blob file at `path` by content, unless an object with
  // its SHA-256 is there already, and fills `f` (size, SHA-256, object key).
  // A file the hash cache knows is not read at all (a HEAD decides). A file
  // it does not know is new on this host (SSTs are never rewritten, and the
  // cache outlives restarts), so most likely new to the repository too: it
  // is read once, uploaded to `incoming_key` (in the attempt's own prefix)
  // while hashed, then moved under its content key (a rename, or a
  // server-side copy); if that key turns out to exist, the upload is
  // dropped. Without a hash cache the file is hashed first, then uploaded
  // only if needed (two reads, no wasted upload).
  absl::Status StoreByContent(const std::string& path,
                              const std::string& incoming_key,
                              const BlobStore::PutOptions& put,
                              shutter::v1::FileEntry* f, PublishStats* stats);
  // Deletes every object under snapshots/<id>/, partition manifests first.
  absl::Status DeleteSnapshotObjects(const std::string& snapshot_id);
  // True if the GC lock is held (and not stale).
  absl::StatusOr<bool> GcLockHeld() const;

  const std::unique_ptr<BlobStore> store_;
  const RepositoryOptions options_;
  std::unique_ptr<RateLimiter> total_limiter_;  // null: unthrottled
};

}  // namespace shutter::snapshot

#endif  // SHUTTER_SNAPSHOT_BLOB_REPOSITORY_H_
