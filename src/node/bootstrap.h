#ifndef SHUTTER_NODE_BOOTSTRAP_H_
#define SHUTTER_NODE_BOOTSTRAP_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "snapshot/repository.h"

namespace shutter::node {

// Bootstrap of a new or replaced node from a snapshot: before the node
// opens its stores, every hosted partition that has no local store
// (a new replica, a replaced disk) is restored from the snapshot's
// published checkpoint.
struct BootstrapOptions {
  std::string data_dir;
  std::vector<uint32_t> partitions;
  // "latest" (the newest committed snapshot) or a snapshot id.
  std::string from;
  // Refuse a partition whose checkpoint has a lower applied index.
  uint64_t min_applied_index = 0;
};

struct BootstrapReport {
  std::string snapshot_id;
  std::vector<uint32_t> restored;  // partitions restored
  std::vector<uint32_t> kept;      // had a local store already
  uint64_t bytes = 0;
};

// For each partition without "<data_dir>/partitions/<p:05>": downloads its
// files into "<data_dir>/staging/bootstrap-<p:05>" (each checked against
// its size and SHA-256), opens the result read-only to check its applied
// index and epoch against the manifest, then renames it into place and
// fsyncs the directory. A crash leaves either no store (bootstrap runs
// again) or the complete one. Errors name the snapshot and partition:
// NOT_FOUND (no committed snapshot, unknown id, a partition the snapshot
// lacks), FAILED_PRECONDITION (applied index below the minimum),
// DATA_LOSS (a missing or corrupt object, named). On error the partition
// has no store and nothing is left in staging.
absl::StatusOr<BootstrapReport> BootstrapPartitions(
    const BootstrapOptions& options, const snapshot::Repository& repo);

}  // namespace shutter::node

#endif  // SHUTTER_NODE_BOOTSTRAP_H_
