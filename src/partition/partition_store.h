#ifndef SHUTTER_PARTITION_PARTITION_STORE_H_
#define SHUTTER_PARTITION_PARTITION_STORE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/latency_recorder.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
}  // namespace rocksdb

namespace shutter::partition {

// RocksDB write stalls of a set of stores: how often a column family's
// writes were slowed down or stopped (too many immutable memtables or L0
// files, e.g. when flushes fall behind) and for how long. Thread-safe.
struct WriteStallStats {
  std::atomic<uint64_t> stalls{0};
  // Time spent stalled, counted when a stall ends.
  std::atomic<uint64_t> stalled_micros{0};
};

// One mutation of a write batch.
// Size limits of the data plane (see proto/shutter/v1/partition_data.proto):
// every answer fits the 4 MiB a gRPC client accepts by default.
inline constexpr size_t kMaxKeyBytes = 16 << 10;
inline constexpr size_t kMaxValueBytes = 1 << 20;
inline constexpr size_t kMaxBatchMutations = 10000;
inline constexpr size_t kMaxBatchBytes = 4 << 20;
inline constexpr size_t kMaxScanPageBytes = 2 << 20;

struct Mutation {
  enum class Op { kPut, kDelete };
  Op op = Op::kPut;
  std::string key;
  std::string value;  // ignored for kDelete
};

// Metadata stored in the "meta" column family, read from a live store or
// from a checkpoint.
struct PartitionMeta {
  uint64_t applied_index = 0;
  uint64_t leader_epoch = 0;
  // Set by a restore (StampRestored): "<restore job> <snapshot> <applied
  // index>"; empty for a store that was never restored.
  std::string restored_by;
};

// One partition's data: a plain RocksDB database with user keys as-is in
// the default column family and partition metadata in the "meta" column
// family (keys "applied_index" and "leader_epoch", values in decimal ASCII,
// so `ldb --column_family=meta get applied_index` shows them). The applied
// index is the number of write batches applied; it changes in the same
// atomic WriteBatch as the data it counts.
//
// Thread-safe: writes are serialized internally; reads and checkpoints run
// concurrently with writes.
class PartitionStore {
 public:
  struct Options {
    // Database directory; created if missing.
    std::string path;
    uint32_t partition_id = 0;
    // If set, the latency of every successful Write (waiting for the
    // partition's write lock included) is recorded here. Must outlive the
    // store.
    LatencyRecorder* write_latency = nullptr;
    // If set, RocksDB write stalls of this store are counted here. Must
    // outlive the store.
    WriteStallStats* write_stalls = nullptr;
  };

  // Opens (creating if needed) the database at options.path.
  static absl::StatusOr<std::unique_ptr<PartitionStore>> Open(
      const Options& options);
  ~PartitionStore();

  PartitionStore(const PartitionStore&) = delete;
  PartitionStore& operator=(const PartitionStore&) = delete;

  uint32_t partition_id() const { return partition_id_; }
  const std::string& path() const { return path_; }

  // Makes this store the partition's leader with a new epoch: one more than
  // the last epoch stored, or `min_epoch` if that is higher; persisted with
  // sync before returning.
  absl::StatusOr<uint64_t> TakeLeadership(uint64_t min_epoch = 0)
      ABSL_LOCKS_EXCLUDED(write_mu_);
  // Gives up leadership (in memory; the epoch stays).
  void StepDown();
  bool is_leader() const { return leader_.load(); }

  // Current metadata.
  PartitionMeta meta() const ABSL_LOCKS_EXCLUDED(write_mu_);

  // Applies `mutations` atomically as one batch, advancing the applied
  // index by one. INVALID_ARGUMENT if empty or over a size limit (an empty
  // key, a key over kMaxKeyBytes, a value over kMaxValueBytes, more than
  // kMaxBatchMutations mutations or kMaxBatchBytes in all);
  // FAILED_PRECONDITION if not the leader, or if `expected_epoch` is not 0
  // and not the current epoch (a writer fenced by a newer leadership, e.g.
  // after a restore); UNAVAILABLE while writes are refused (RefuseWrites).
  // Returns the new applied index.
  absl::StatusOr<uint64_t> Write(const std::vector<Mutation>& mutations,
                                 bool sync, uint64_t expected_epoch = 0)
      ABSL_LOCKS_EXCLUDED(write_mu_);

  // From now on, Write fails with UNAVAILABLE and `reason` (retryable: the
  // partition is being restored). Returns once no write is in progress,
  // so nothing written afterwards can be lost by what follows.
  void RefuseWrites(std::string reason) ABSL_LOCKS_EXCLUDED(write_mu_);
  void AllowWrites() ABSL_LOCKS_EXCLUDED(write_mu_);

  // Opens the database at `dir` (not open elsewhere; e.g. a restored
  // checkpoint before it is moved into place), sets its leader epoch to
  // `epoch` and its restore marker (PartitionMeta::restored_by) to
  // `marker`, in one synced write, and closes it.
  static absl::Status StampRestored(const std::string& dir, uint64_t epoch,
                                    const std::string& marker);

  // Point read; NOT_FOUND if absent.
  absl::StatusOr<std::string> Get(const std::string& key) const;

  // Up to `limit` entries in [start, end) (end empty = unbounded), ending
  // before the entry that would take keys + values past `max_bytes` (at
  // least one entry is returned if any exists). `*next_key` is set to the
  // first key not returned, or cleared at the end.
  absl::Status Scan(const std::string& start, const std::string& end,
                    size_t limit, size_t max_bytes,
                    std::vector<std::pair<std::string, std::string>>* out,
                    std::string* next_key) const;

  // RocksDB's estimate of the on-disk size (live SSTs plus memtables).
  uint64_t ApproximateSizeBytes() const;

  // Writes a RocksDB checkpoint (hard links where possible) into `dir`,
  // which must not exist; its parent must exist. The checkpoint is a
  // complete database openable on its own.
  absl::Status CreateCheckpoint(const std::string& dir) const;

  // Opens the database at `dir` read-only (e.g. a checkpoint) and reads
  // its metadata. Writes nothing into `dir`.
  static absl::StatusOr<PartitionMeta> ReadMeta(const std::string& dir);

 private:
  PartitionStore(uint32_t partition_id, std::string path);

  const uint32_t partition_id_;
  const std::string path_;
  LatencyRecorder* write_latency_ = nullptr;
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* default_cf_ = nullptr;  // owned by db_
  std::unique_ptr<rocksdb::ColumnFamilyHandle> meta_cf_;
  std::atomic<bool> leader_{false};

  mutable absl::Mutex write_mu_;
  PartitionMeta meta_ ABSL_GUARDED_BY(write_mu_);
  // Non-empty: writes are refused with this reason.
  std::string writes_refused_ ABSL_GUARDED_BY(write_mu_);
};

// Threads RocksDB may use to open the table (SST) files of the store in
// `dir` when it opens it: one per 8 table files in the directory, at least
// 1 (the opening thread alone) and at most 16 (RocksDB's own default for
// `max_file_opening_threads`). RocksDB starts that many threads for each
// column family at every open whatever the number of files, so with its
// default every open of a small store (a checkpoint read back, a partition
// at start) created and joined 30 threads; a large store still opens its
// files in parallel. 1 if `dir` cannot be listed (e.g. a new store).
int TableOpeningThreads(const std::string& dir);

// A partition database (typically a published checkpoint) opened
// read-only. Opening writes nothing into the directory (no LOG file).
// Thread-safe.
class ReadOnlyPartition {
 public:
  static absl::StatusOr<std::unique_ptr<ReadOnlyPartition>> Open(
      const std::string& dir);
  ~ReadOnlyPartition();

  const PartitionMeta& meta() const { return meta_; }
  // NOT_FOUND if absent.
  absl::StatusOr<std::string> Get(const std::string& key) const;
  // Number of keys in the default column family (full scan).
  absl::StatusOr<uint64_t> CountKeys() const;

 private:
  ReadOnlyPartition() = default;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  PartitionMeta meta_;
};

}  // namespace shutter::partition

#endif  // SHUTTER_PARTITION_PARTITION_STORE_H_
