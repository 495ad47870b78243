#ifndef SHUTTER_SNAPSHOT_REPOSITORY_H_
#define SHUTTER_SNAPSHOT_REPOSITORY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/s3_flags.h"
#include "shutter/v1/common.pb.h"

namespace shutter::snapshot {

class BlobStore;
class FileHashCache;

// A partition manifest's bytes as stored: what a cluster manifest pins.
struct ManifestDigest {
  std::string sha256;  // lower-case hex
  uint64_t size = 0;
};

// What one publish did, for progress reports and benchmarks.
struct PublishStats {
  // The manifest written (set when the publish succeeded).
  ManifestDigest manifest;
  uint64_t uploaded_bytes = 0;
  // Content-addressed files the repository already had (not uploaded).
  uint64_t reused_bytes = 0;
  uint32_t files_uploaded = 0;
  uint32_t files_reused = 0;
  // Files whose SHA-256 came from the hash cache instead of a read.
  uint32_t files_hash_cached = 0;
  // Bytes read from the local files to publish them (hashing and
  // uploading): about the published bytes once each when every file is
  // new (see BlobRepository::StoreByContent).
  uint64_t local_bytes_read = 0;
};

// How DownloadPartition fetches.
struct DownloadOptions {
  // Files fetched at once, each its own stream. Every stream of one
  // download shares the per-stream throttle of RepositoryOptions (a
  // partition downloads as fast as one publish uploads); all downloads
  // and publishes through the repository object share the total one.
  int parallel_files = 4;
  // Called after each file is written and checked, with its name; an
  // error stops the download with that error (cancellation, tests).
  std::function<absl::Status(const std::string& name)> after_file;
};

// One snapshot as found in the repository.
struct SnapshotListing {
  std::string snapshot_id;
  bool committed = false;   // has a cluster manifest
  uint32_t partitions = 0;  // partition manifests present
};

struct RepositoryStats {
  uint64_t snapshots = 0;  // with a cluster manifest
  uint64_t uncommitted_snapshots = 0;
  uint64_t objects = 0;
  uint64_t bytes_stored = 0;  // sum of object sizes
  // Sum over committed snapshots of their partitions' total_bytes: what
  // full copies would take. logical / stored is the sharing factor.
  uint64_t logical_bytes = 0;
  // Bytes of objects referenced by more than one committed snapshot.
  uint64_t bytes_shared = 0;
  // Multipart uploads started under the repository and never completed
  // or aborted (a publisher killed mid-upload; S3 only): their parts are
  // billed and invisible to listings. GC aborts those past the grace.
  uint64_t incomplete_uploads = 0;
};

// A publish's registration with the GC protocol (locks/publish/<id>, see
// Repository::CollectGarbage): which process publishes what.
struct PublishLock {
  std::string key;
  std::string node_id;
  // The publishing process (RepositoryOptions::publisher_instance); empty
  // in locks written by older nodes.
  std::string instance;
  std::string snapshot_id;
  uint32_t partition_id = 0;
  absl::Time modified;
};

struct GcOptions {
  // Report what would be deleted; delete nothing.
  bool dry_run = false;
  // Only objects older than this are deleted, so that an upload that has
  // not reached its manifest yet is never collected.
  absl::Duration grace = absl::Hours(1);
  // Owner recorded in the GC lock; a GC finding a lock with its own owner
  // (a run of the same job resumed after a crash) takes it over.
  std::string owner;
  // How long to wait for in-flight publishes to finish before giving up.
  absl::Duration wait_for_publishes = absl::Seconds(60);
  // Publish locks of attempts known to be over (true: the controller has
  // finished the task or its job) are removed instead of waited for. Unset:
  // only locks older than RepositoryOptions::lock_stale_after are.
  std::function<bool(const PublishLock&)> publish_lock_dead;
  // The longest the sweep holds the GC lock, during which publishers wait:
  // past it the sweep stops, releases the lock and reports
  // sweep_incomplete (the next run deletes the rest). Publishers are never
  // kept out for longer than the mark plus this.
  absl::Duration max_sweep = absl::Minutes(5);
  // Tests: called after marking, before the first delete, and after each
  // delete with the number deleted so far.
  std::function<void()> test_before_sweep;
  std::function<void(uint64_t)> test_after_delete;
};

struct GcReport {
  uint64_t objects_scanned = 0;
  uint64_t objects_referenced = 0;
  uint64_t objects_deleted = 0;  // or, in a dry run, to delete
  uint64_t bytes_deleted = 0;
  // Unreferenced but younger than the grace period: kept this time.
  uint64_t objects_too_young = 0;
  uint64_t manifests_read = 0;
  // Publish locks removed because their attempts were over.
  uint64_t publish_locks_released = 0;
  // Incomplete multipart uploads aborted (older than the grace), and kept
  // (younger: maybe still running).
  uint64_t uploads_aborted = 0;
  uint64_t uploads_too_young = 0;
  // The sweep stopped at GcOptions::max_sweep; run again for the rest.
  bool sweep_incomplete = false;
};

// Where snapshots are stored: the snapshot repository, written once on top
// of a BlobStore (a directory or S3-compatible object storage). The
// controller and nodes use only this interface; keys are relative to the
// repository root and '/'-separated.
//
// Layout (format 2):
//   REPOSITORY_ID, REPOSITORY_FORMAT          identity, format ("2")
//   blobs/sha256/<2 hex>/<sha256>              SST and blob files, stored
//                                              once, shared by snapshots
//   snapshots/<id>/partitions/<p, 5 digits>/attempts/<attempt>/<name>
//                                              small per-checkpoint files
//   snapshots/<id>/partitions/<p>/MANIFEST.json   partition commit point
//   snapshots/<id>/CLUSTER_MANIFEST.json          snapshot commit point
//   locks/gc, locks/publish/<id>               GC exclusion (see GC below)
// Format 1 (files next to MANIFEST.json, no blobs/) is read as is.
//
// Commit points are written only-if-absent, so two publishers of one
// partition (a deposed leader and the new one) cannot overwrite each
// other: the first wins and the other gets ALREADY_EXISTS.
//
// Implementations are thread-safe.
class Repository {
 public:
  virtual ~Repository() = default;

  // Publishes every regular file in `local_dir` as partition
  // `header.partition_id()` of snapshot `header.snapshot_id()`, then writes
  // the partition manifest (header plus the files with sizes, SHA-256 and
  // object keys). SST and blob files already in the repository are not
  // uploaded again. The manifest is the commit point: on success every
  // file and the manifest are durable; on failure no manifest is visible
  // (uploaded objects are left for GC or removed). ALREADY_EXISTS if that
  // partition is already published; RESOURCE_EXHAUSTED if the repository
  // is out of space; ABORTED while a GC sweeps (try again). `precommit`,
  // if set, runs right before the commit point; an error from it aborts
  // the publish with that error and nothing becomes visible (a node uses
  // it to re-check leadership). `stats`, if set, receives what was done.
  virtual absl::StatusOr<shutter::v1::PartitionManifest> PublishPartition(
      const shutter::v1::PartitionManifest& header,
      const std::string& local_dir,
      const std::function<absl::Status()>& precommit = nullptr,
      PublishStats* stats = nullptr) = 0;

  // NOT_FOUND if the partition is not published. `digest`, if not null,
  // receives the SHA-256 and size of the manifest's bytes as stored.
  // `expected_sha256`, if not empty, is what a cluster manifest recorded
  // for it: other bytes are DATA_LOSS naming both digests.
  virtual absl::StatusOr<shutter::v1::PartitionManifest> ReadPartitionManifest(
      const std::string& snapshot_id, uint32_t partition_id,
      const std::string& expected_sha256, ManifestDigest* digest) const = 0;
  absl::StatusOr<shutter::v1::PartitionManifest> ReadPartitionManifest(
      const std::string& snapshot_id, uint32_t partition_id) const {
    return ReadPartitionManifest(snapshot_id, partition_id, "", nullptr);
  }

  // The size of a published partition manifest's stored bytes (one stat
  // or HEAD, no read); NOT_FOUND if the partition is not published.
  virtual absl::StatusOr<uint64_t> PartitionManifestSize(
      const std::string& snapshot_id, uint32_t partition_id) const = 0;

  // Checks every file the manifest lists: present, right size, right
  // SHA-256. DATA_LOSS naming the first bad file.
  virtual absl::Status VerifyPartition(
      const shutter::v1::PartitionManifest& manifest) const = 0;

  // Writes every file of the manifest into `local_dir` (created; must not
  // exist or be empty), each checked against its size and SHA-256, and
  // fsynced: a directory RocksDB can open. DATA_LOSS naming the object and
  // file on a missing or mismatched one.
  virtual absl::Status DownloadPartition(
      const shutter::v1::PartitionManifest& manifest,
      const std::string& local_dir,
      const DownloadOptions& options = DownloadOptions()) const = 0;

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

  // Deletes a snapshot, committed or not: the cluster manifest first (from
  // then on it is no longer a snapshot), then its partition manifests and
  // per-checkpoint files. Shared content-addressed objects are left for
  // GC. Idempotent: OK if nothing is left; a crash midway leaves an
  // uncommitted remainder that another call removes.
  virtual absl::Status DeleteSnapshot(const std::string& snapshot_id) = 0;

  // Every snapshot with at least one object in the repository, by id.
  virtual absl::StatusOr<std::vector<SnapshotListing>> ListSnapshots()
      const = 0;

  virtual absl::StatusOr<RepositoryStats> GetStats() const = 0;

  // Garbage collection: deletes objects no partition manifest references
  // (content-addressed blobs and per-checkpoint files of failed attempts)
  // that are older than options.grace. Mark and sweep under an exclusive
  // lock (locks/gc, written only-if-absent) that publishers respect:
  // a publisher registers itself (locks/publish/<id>) and then checks for
  // the GC lock; GC takes its lock, waits until no publisher is
  // registered, then marks and sweeps. Either the GC sees the publisher
  // or the publisher sees the GC, so an object a publisher decided to
  // reuse is never swept from under it. Crash-safe and idempotent: a
  // killed GC leaves only objects that were garbage anyway; a rerun (by
  // the same owner, or after the lock goes stale) finishes the work.
  // FAILED_PRECONDITION if another GC holds the lock; UNAVAILABLE if
  // publishes kept running past options.wait_for_publishes.
  // Incomplete multipart uploads under the repository older than the grace
  // are aborted too (after the sweep).
  virtual absl::StatusOr<GcReport> CollectGarbage(const GcOptions& options) = 0;

  // Removes the publish locks for which `dead` returns true: their
  // attempts are over (a restarted node removes those of its previous
  // processes), so a GC need not wait for them. Returns how many.
  virtual absl::StatusOr<int> ReleasePublishLocks(
      const std::function<bool(const PublishLock&)>& dead) = 0;

  // Relative keys of the manifests.
  static std::string PartitionDir(const std::string& snapshot_id,
                                  uint32_t partition_id);
  static std::string PartitionManifestPath(const std::string& snapshot_id,
                                           uint32_t partition_id);
  static std::string ClusterManifestPath(const std::string& snapshot_id);

  // A human-readable location of the repository (path or URI).
  virtual std::string Describe() const = 0;

  // The repository's identity: a random id created once with it (the
  // object REPOSITORY_ID), so that the controller and the nodes can check
  // that they name the same repository. NOT_FOUND if the repository has
  // none yet (it was opened without create_if_missing and nobody created
  // it).
  virtual absl::StatusOr<std::string> ReadIdentity() const = 0;

  // The storage underneath, for tools and tests.
  virtual BlobStore* blob_store() const = 0;
};

struct RepositoryOptions {
  // Create the repository (its identity and format marker) if missing, and
  // upgrade a format 1 repository to format 2 in place. The controller
  // does; nodes do not, so a node pointed at the wrong place neither
  // creates it nor writes there (its heartbeat is refused).
  bool create_if_missing = true;
  // If > 0, each partition publish (one upload stream) is throttled to this
  // many bytes per second. Models a remote object store, whose bandwidth is
  // capped per connection while parallel uploads add up.
  uint64_t stream_bytes_per_second = 0;
  // If > 0, all publishes through this repository object together are
  // throttled to this many bytes per second: a node-wide cap that keeps
  // snapshot I/O from starving foreground traffic.
  uint64_t total_bytes_per_second = 0;
  // If set, SHA-256 of immutable files (SST, blob) are taken from and
  // recorded in this cache, so unchanged files are not read again. Must
  // outlive the repository.
  FileHashCache* hash_cache = nullptr;
  // Publish locks older than this are ignored (their writer died); live
  // publishers refresh theirs at a quarter of it.
  absl::Duration lock_stale_after = absl::Minutes(30);
  // Who publishes through this repository object, recorded in its publish
  // locks (a node: "<instance id>/<start count>"), so that the next process
  // of the same node knows which locks are its dead predecessors'.
  std::string publisher_instance;
  // S3 settings, for s3:// URIs (see s3_blob_store.h). Empty: from the
  // environment (AWS_ENDPOINT_URL, AWS_REGION / AWS_DEFAULT_REGION,
  // AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, or the
  // file AWS_SHARED_CREDENTIALS_FILE / ~/.aws/credentials).
  std::string s3_endpoint;
  std::string s3_region;
  std::string s3_credentials_file;
  // Path-style addressing (endpoint/bucket/key), for non-AWS stores.
  // Default: on when an endpoint is given.
  int s3_path_style = -1;  // -1: auto, 0: virtual-hosted, 1: path
};

// Copies the daemons' --s3-* flags into `options`.
void ApplyS3Flags(const S3Flags& flags, RepositoryOptions* options);

// Opens the repository at `uri`: a directory path, "file:///path", or
// "s3://bucket[/prefix]". INVALID_ARGUMENT for other schemes;
// FAILED_PRECONDITION for a repository of a newer format than this build.
absl::StatusOr<std::unique_ptr<Repository>> OpenRepository(
    const std::string& uri, const RepositoryOptions& options = {});

// Opens the repository over an already opened blob store.
absl::StatusOr<std::unique_ptr<Repository>> OpenRepositoryOn(
    std::unique_ptr<BlobStore> store, const RepositoryOptions& options = {});

// The current repository format, and the manifest format written.
inline constexpr uint32_t kRepositoryFormat = 2;

}  // namespace shutter::snapshot

#endif  // SHUTTER_SNAPSHOT_REPOSITORY_H_
