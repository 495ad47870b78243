#ifndef SHUTTER_SNAPSHOT_REPOSITORY_H_
#define SHUTTER_SNAPSHOT_REPOSITORY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "shutter/v1/common.pb.h"

namespace shutter::snapshot {

// Where snapshots are stored. A snapshot is a set of published partitions
// plus, once complete, a cluster manifest. Paths returned are relative to
// the repository root and use '/' separators, so they stay meaningful for
// an object store.
//
// Layout (the filesystem implementation; object stores use the same keys):
//   snapshots/<snapshot_id>/partitions/<partition_id, 5 digits>/<files>
//   snapshots/<snapshot_id>/partitions/<partition_id>/MANIFEST.json
//   snapshots/<snapshot_id>/CLUSTER_MANIFEST.json
//
// Implementations are thread-safe.
class Repository {
 public:
  virtual ~Repository() = default;

  // Publishes every regular file in `local_dir` as partition
  // `header.partition_id()` of snapshot `header.snapshot_id()`, then writes
  // the partition manifest (header plus the files with sizes and SHA-256).
  // Atomic: on success the files and manifest are durable and visible
  // together; on failure nothing is visible and partial uploads are
  // removed. ALREADY_EXISTS if that partition is already published;
  // RESOURCE_EXHAUSTED if the repository is out of space. `precommit`, if
  // set, runs right before the commit point (everything is durable but
  // not yet visible); an error from it aborts the publish with that error
  // and nothing becomes visible (a node uses it to re-check leadership).
  virtual absl::StatusOr<shutter::v1::PartitionManifest> PublishPartition(
      const shutter::v1::PartitionManifest& header,
      const std::string& local_dir,
      const std::function<absl::Status()>& precommit = nullptr) = 0;

  // NOT_FOUND if the partition is not published.
  virtual absl::StatusOr<shutter::v1::PartitionManifest> ReadPartitionManifest(
      const std::string& snapshot_id, uint32_t partition_id) const = 0;

  // Checks every file the manifest lists: present, right size, right
  // SHA-256. DATA_LOSS naming the first bad file.
  virtual absl::Status VerifyPartition(
      const shutter::v1::PartitionManifest& manifest) const = 0;

  // Writes the cluster manifest crash-safely. This is the snapshot's commit
  // point. ALREADY_EXISTS if one is already there (it is never replaced).
  virtual absl::Status CommitClusterManifest(
      const shutter::v1::ClusterManifest& manifest) = 0;

  // NOT_FOUND if the snapshot has no cluster manifest.
  virtual absl::StatusOr<shutter::v1::ClusterManifest> ReadClusterManifest(
      const std::string& snapshot_id) const = 0;

  // Removes everything of an uncommitted snapshot (rollback). OK if there
  // is nothing. FAILED_PRECONDITION if it has a cluster manifest: committed
  // snapshots are never rolled back.
  virtual absl::Status DeleteUncommittedSnapshot(
      const std::string& snapshot_id) = 0;

  // Relative paths of the manifests.
  static std::string PartitionDir(const std::string& snapshot_id,
                                  uint32_t partition_id);
  static std::string PartitionManifestPath(const std::string& snapshot_id,
                                           uint32_t partition_id);
  static std::string ClusterManifestPath(const std::string& snapshot_id);

  // A human-readable location of the repository (path or URI).
  virtual std::string Describe() const = 0;

  // The repository's identity: a random id created once with it (the file
  // REPOSITORY_ID at its root), so that the controller and the nodes can
  // check that they name the same repository. NOT_FOUND if the repository
  // has none yet (it was opened without create_if_missing and nobody
  // created it).
  virtual absl::StatusOr<std::string> ReadIdentity() const = 0;
};

struct RepositoryOptions {
  // Create the repository (its directory and identity) if missing. The
  // controller does; nodes do not, so a node pointed at the wrong place
  // neither creates it nor writes there (its heartbeat is refused).
  bool create_if_missing = true;
  // If > 0, each partition publish (one upload stream) is throttled to this
  // many bytes per second. Models a remote object store, whose bandwidth is
  // capped per connection while parallel uploads add up.
  uint64_t stream_bytes_per_second = 0;
  // If > 0, all publishes through this repository object together are
  // throttled to this many bytes per second: a node-wide cap that keeps
  // snapshot I/O from starving foreground traffic.
  uint64_t total_bytes_per_second = 0;
};

// Opens the repository at `uri`: a directory path or "file:///path". The
// directory is created if missing. INVALID_ARGUMENT for other schemes.
absl::StatusOr<std::unique_ptr<Repository>> OpenRepository(
    const std::string& uri, const RepositoryOptions& options = {});

}  // namespace shutter::snapshot

#endif  // SHUTTER_SNAPSHOT_REPOSITORY_H_
