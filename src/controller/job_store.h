#ifndef SHUTTER_CONTROLLER_JOB_STORE_H_
#define SHUTTER_CONTROLLER_JOB_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "shutter/v1/admin.pb.h"

namespace rocksdb {
class DB;
}

namespace shutter::controller {

// One atomic, durable change to the job store: records put and keys
// deleted together.
struct JobStoreBatch {
  std::vector<std::pair<std::string, std::string>> puts;
  std::vector<std::string> deletes;
  size_t size() const { return puts.size() + deletes.size(); }
};

// Durable record of jobs, as small ordered key-value records so that an
// etcd-backed store (controller high availability) needs no other data
// model: small values (one task, or one job header), ordered keys, and
// batches of at most MaxBatchRecords() records.
//
// Record schema (JobKeys below; the values are the controller's own
// records, proto/shutter/store/v1/job_records.proto, never API messages):
//   meta/job_format                kJobFormat ("2")
//   v2/job/<job id>/h              the job's header: a JobRecord
//   v2/job/<job id>/t/<10-digit partition id>
//                                  one TaskRecord
// A job exists when its header does; task records without a header (a
// creation cut short by a crash, never acknowledged) are ignored and
// removed at load. A transition writes the one task record it changes.
// Stores of older formats are migrated by LoadAll (Migrate); a newer
// format is refused.
//
// Implementations are thread-safe.
class JobStore {
 public:
  static constexpr size_t kMaxBatchRecords = 1000;

  virtual ~JobStore() = default;

  // Applies `batch` atomically; durable (synced, or committed by a quorum)
  // when it returns OK. INVALID_ARGUMENT over MaxBatchRecords().
  virtual absl::Status Write(const JobStoreBatch& batch) = 0;

  // The most records one atomic Write takes: kMaxBatchRecords, or fewer
  // where the store's engine limits a transaction (etcd: 128 operations).
  virtual size_t MaxBatchRecords() const { return kMaxBatchRecords; }

  // Calls `fn` for every record whose key starts with `prefix`, in key
  // order; stops at the first error `fn` returns.
  virtual absl::Status Scan(
      absl::string_view prefix,
      const std::function<absl::Status(absl::string_view key,
                                       absl::string_view value)>& fn) = 0;

  // One record put or deleted, durably (records outside the job schema:
  // gc/<id>, schedule/<name>).
  absl::Status PutRecord(const std::string& key, const std::string& value);
  absl::Status DeleteRecord(const std::string& key);

  // Convenience over Write/Scan with the schema above.
  // Writes a whole job (header and every task), in batches; the header
  // last, so a job is either complete or absent.
  absl::Status PutJob(const shutter::v1::Snapshot& job);
  // Every job, assembled, in snapshot id order (= creation order), after
  // Migrate(). Jobs of a kind this controller does not know (a newer
  // one's) are left in the store as they are and not returned.
  absl::StatusOr<std::vector<shutter::v1::Snapshot>> LoadAll();

  // Brings a store of an older format to kJobFormat: format 0 (one whole
  // shutter.v1.Snapshot per job at snapshot/<id>) and format 1
  // (shutter.v1.Snapshot headers and shutter.v1.PartitionTask records at
  // job/<id>/...) are rewritten job by job, new records (header last)
  // before the old ones are removed, so a crash at any point loses no job
  // and the next run finishes it. FAILED_PRECONDITION for a store of a
  // newer format (nothing is changed). OK at once for a current store.
  absl::Status Migrate();
  // The store's format: kJobFormat once migrated, -1 if it says none
  // (empty, or written before formats were recorded).
  absl::StatusOr<int> ReadFormat();
};

// The record keys and values of the schema.
struct JobKeys {
  static std::string Header(absl::string_view snapshot_id);
  static std::string Task(absl::string_view snapshot_id, uint32_t partition_id);
  // The job header record (a JobRecord): `job` without its partitions.
  static std::string EncodeHeader(const shutter::v1::Snapshot& job);
  static std::string EncodeTask(absl::string_view job_id,
                                const shutter::v1::PartitionTask& task);
};

// A JobStore in an embedded RocksDB database; writes use sync=true, and
// concurrent writers share one sync (RocksDB's write groups).
class RocksDbJobStore : public JobStore {
 public:
  // Opens or creates the database at `path`.
  static absl::StatusOr<std::unique_ptr<RocksDbJobStore>> Open(
      const std::string& path);
  ~RocksDbJobStore() override;

  absl::Status Write(const JobStoreBatch& batch) override;
  absl::Status Scan(
      absl::string_view prefix,
      const std::function<absl::Status(absl::string_view key,
                                       absl::string_view value)>& fn) override;

 private:
  explicit RocksDbJobStore(std::unique_ptr<rocksdb::DB> db);
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_JOB_STORE_H_
