#ifndef SHUTTER_CONTROLLER_RESTORE_KIND_H_
#define SHUTTER_CONTROLLER_RESTORE_KIND_H_

#include <string>

#include "controller/job_kind.h"
#include "controller/node_registry.h"
#include "controller/node_transport.h"
#include "snapshot/repository.h"

namespace shutter::controller {

// Restore jobs: a task asks the partition's leader to replace its store
// with the partition's checkpoint from task.source_snapshot_id()
// (NodeService.RestorePartition) and checks that the answer is that
// checkpoint (snapshot, partition, applied index); the commit has nothing
// to write; there is no rollback (a swapped store stays restored: the
// snapshot's state is what the operator asked for). Thread-safe; the
// transport must outlive it.
class RestoreKind : public JobKind {
 public:
  // `registry` (may be null) learns each restored partition's new epoch
  // and applied index from the answer, before the task counts as done, so
  // that a COMMITTED restore is what ListPartitions shows at once.
  RestoreKind(NodeTransport* transport, absl::Duration rpc_timeout,
              NodeRegistry* registry = nullptr)
      : transport_(transport), rpc_timeout_(rpc_timeout), registry_(registry) {}

  shutter::v1::JobType type() const override {
    return shutter::v1::JOB_TYPE_RESTORE;
  }
  const char* name() const override { return "restore"; }

  void RunTask(const shutter::v1::Snapshot& job,
               const shutter::v1::PartitionTask& task,
               const std::string& address, TaskCallback done) override;
  absl::AnyInvocable<absl::Status() &&> PrepareCommit(const Job& job,
                                                      absl::Time now) override;
  void DescribeCommit(const std::string& job_id, bool partial, int failed,
                      int total, const std::string& first_failed,
                      shutter::v1::Snapshot* header) const override;
  absl::Status Rollback(const std::string& job_id) override;
  void CancelOnNode(const std::string& address,
                    const std::string& job_id) override;
  // A swapped partition holds the snapshot's data whatever happens to the
  // job: cancel keeps every restored task PUBLISHED ("restored").
  bool CancelKeepsOutcomes() const override { return true; }

 private:
  NodeTransport* const transport_;
  const absl::Duration rpc_timeout_;
  NodeRegistry* const registry_;
};

class JobEngine;

// The front door of restore jobs (AdminService.RestoreSnapshot): checks the
// request against the snapshot's cluster manifest in `repo` (it need not be
// one of this controller's jobs), plans it (per node: partitions, bytes,
// concurrency) and, unless dry_run, submits the job to `engine`. On error
// nothing is recorded or dispatched.
absl::StatusOr<shutter::v1::RestoreSnapshotResponse> StartRestore(
    JobEngine& engine, snapshot::Repository& repo,
    const shutter::v1::RestoreSnapshotRequest& request);

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_RESTORE_KIND_H_
