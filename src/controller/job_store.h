#ifndef SHUTTER_CONTROLLER_JOB_STORE_H_
#define SHUTTER_CONTROLLER_JOB_STORE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "shutter/v1/admin.pb.h"

namespace rocksdb {
class DB;
}

namespace shutter::controller {

// Durable record of snapshot jobs. Pluggable: RocksDB now, etcd later (for
// controller high availability). Implementations are thread-safe.
class JobStore {
 public:
  virtual ~JobStore() = default;
  // Stores (inserting or replacing) the record keyed by its snapshot id.
  // Durable (synced) when it returns OK.
  virtual absl::Status Put(const shutter::v1::Snapshot& snapshot) = 0;
  // Every record, in snapshot id order (= creation order).
  virtual absl::StatusOr<std::vector<shutter::v1::Snapshot>> LoadAll() = 0;
};

// A JobStore in an embedded RocksDB database: key "snapshot/<id>", value
// the serialized shutter.v1.Snapshot; writes use sync=true.
class RocksDbJobStore : public JobStore {
 public:
  // Opens or creates the database at `path`.
  static absl::StatusOr<std::unique_ptr<RocksDbJobStore>> Open(
      const std::string& path);
  ~RocksDbJobStore() override;

  absl::Status Put(const shutter::v1::Snapshot& snapshot) override;
  absl::StatusOr<std::vector<shutter::v1::Snapshot>> LoadAll() override;

 private:
  explicit RocksDbJobStore(std::unique_ptr<rocksdb::DB> db);
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_JOB_STORE_H_
