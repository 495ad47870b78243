#ifndef SHUTTER_NODE_PARTITION_RESTORER_H_
#define SHUTTER_NODE_PARTITION_RESTORER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/io_priority.h"
#include "node/node_host.h"
#include "node/work_runner.h"
#include "scheduler/scheduler.h"
#include "shutter/v1/node.pb.h"
#include "snapshot/repository.h"

namespace shutter::node {

// Restores partitions led by this node from snapshots in the repository
// (NodeService.RestorePartition; see node.proto for the contract), several
// at once up to `capacity`. For one request: check the incarnation,
// leadership and epoch (nothing touched otherwise); answer from the
// store's restore marker if this restore job already swapped it; refuse
// the partition's writes; fetch its files into the host's staging path
// (each checked for size and SHA-256); open the result read-only and check
// applied index and epoch against the manifest; stamp it with the epoch
// of the live store and the restore marker; NodeHost::SwapInRestored. On
// any failure before the swap, staging is removed and writes are allowed
// again: the old store is intact.
//
// Thread-safe. `host`, `repo` and `clock` must outlive it.
class PartitionRestorer {
 public:
  struct Options {
    std::string node_id;
    std::string instance_id;  // empty: no incarnation check
    // Restores running at once; further requests wait in order.
    int capacity = 2;
    // Files fetched at once per restore.
    int parallel_files = 4;
    // How long the swap waits for operations on the live store to end.
    absl::Duration drain = absl::Seconds(30);
    // I/O class of the threads fetching and writing restored files.
    IoClass io_class = IoClass::kBestEffortLow;
    // CPU nice value of the same threads (0: unchanged).
    int nice = 0;
    // OK while the node serves (e.g. CheckpointTaker::CheckServing).
    std::function<absl::Status()> check_serving;
    // Tests: called at "restore-fetching" (after the first file),
    // "restore-assembled" (checked, before the swap) and "restore-swapped"
    // (right after the exchange).
    std::function<void(const char* point)> fault;
  };

  struct Stats {
    uint32_t in_flight = 0;
    uint64_t restored = 0;
    uint64_t failed = 0;
    uint64_t bytes = 0;
  };

  using Callback = absl::AnyInvocable<
      void(absl::StatusOr<shutter::v1::RestorePartitionResponse>) &&>;

  static absl::StatusOr<std::unique_ptr<PartitionRestorer>> Create(
      const Options& options, NodeHost* host, snapshot::Repository* repo,
      Clock* clock);
  ~PartitionRestorer();

  // `done` is called exactly once, on a worker thread (or inline if the
  // request is refused up front or the restorer is stopping).
  void Restore(const shutter::v1::RestorePartitionRequest& request,
               Callback done) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<shutter::v1::RestorePartitionResponse> RestoreSync(
      const shutter::v1::RestorePartitionRequest& request);

  // Restores of `restore_id` that have not swapped yet fail with CANCELLED
  // (the old store is kept); later requests are refused. Idempotent.
  void Cancel(const std::string& restore_id) ABSL_LOCKS_EXCLUDED(mu_);

  // Queued requests fail with UNAVAILABLE; running ones finish.
  void Shutdown();

  Stats GetStats() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  PartitionRestorer(const Options& options, NodeHost* host,
                    snapshot::Repository* repo, Clock* clock);

  absl::Status Admit(const shutter::v1::RestorePartitionRequest& req) const;
  absl::StatusOr<shutter::v1::RestorePartitionResponse> Run(
      const shutter::v1::RestorePartitionRequest& req);
  // Fetch, check, stamp and swap (writes already refused).
  absl::StatusOr<shutter::v1::RestorePartitionResponse> Replace(
      const shutter::v1::RestorePartitionRequest& req, uint64_t live_epoch);
  absl::Status CheckNotCancelled(const std::string& restore_id) const {
    return runner_.CheckNotCancelled(restore_id);
  }
  // Statistics of a restore's outcome (the runner's finished hook).
  void Finished(
      const absl::StatusOr<shutter::v1::RestorePartitionResponse>& result)
      ABSL_LOCKS_EXCLUDED(mu_);
  void Fault(const char* point) const {
    if (options_.fault) options_.fault(point);
  }

  const Options options_;
  NodeHost* const host_;
  snapshot::Repository* const repo_;
  Clock* const clock_;
  mutable absl::Mutex mu_;
  // Restores that swapped a store in (a repeat answered from the marker
  // is not counted), and their bytes.
  uint64_t restored_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // The pool, single flight and cancelled jobs (declared last: its runs
  // use the members above until it is shut down).
  WorkRunner<shutter::v1::RestorePartitionResponse> runner_;
};

// The restore marker a restore stamps into the store it installs.
std::string RestoreMarker(const std::string& restore_id,
                          const std::string& snapshot_id,
                          uint64_t applied_index);

}  // namespace shutter::node

#endif  // SHUTTER_NODE_PARTITION_RESTORER_H_
