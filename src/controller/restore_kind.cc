#include "controller/restore_kind.h"

#include "absl/strings/str_cat.h"
#include "common/error_reason.h"
#include "common/text.h"
#include "snapshot/repository.h"

namespace shutter::controller {

using shutter::v1::PartitionTask;
using shutter::v1::RestorePartitionResponse;

void RestoreKind::RunTask(const std::string& job_id, const PartitionTask& task,
                          const std::string& address, TaskCallback done) {
  shutter::v1::RestorePartitionRequest req;
  req.set_restore_id(job_id);
  req.set_snapshot_id(task.source_snapshot_id());
  req.set_partition_id(task.partition_id());
  req.set_expected_leader_epoch(task.leader_epoch());
  req.set_expected_instance_id(task.node_instance_id());
  transport_->RestorePartition(
      address, req, rpc_timeout_,
      [task, registry = registry_, done = std::move(done)](
          absl::StatusOr<RestorePartitionResponse> result) mutable {
        if (!result.ok()) {
          std::move(done)(result.status());
          return;
        }
        const auto& m = result->manifest();
        if (m.snapshot_id() != task.source_snapshot_id() ||
            m.partition_id() != task.partition_id() ||
            m.applied_index() != task.applied_index()) {
          std::move(done)(WithReason(
              absl::InternalError(absl::StrCat(
                  "node restored snapshot ", Quote(m.snapshot_id()),
                  " partition ", m.partition_id(), " at applied index ",
                  m.applied_index(), "; expected ",
                  Quote(task.source_snapshot_id()), " partition ",
                  task.partition_id(), " at ", task.applied_index())),
              ErrorReason::kMismatchedAnswer));
          return;
        }
        if (result->leader_epoch() <= task.leader_epoch() &&
            !result->already_restored()) {
          std::move(done)(WithReason(
              absl::InternalError(absl::StrCat(
                  "the restored partition is at epoch ", result->leader_epoch(),
                  ", not above ", task.leader_epoch())),
              ErrorReason::kMismatchedAnswer));
          return;
        }
        if (registry != nullptr) {
          // The node leads the partition at the new epoch with the
          // snapshot's data: the registry knows it before the job can be
          // COMMITTED (not a heartbeat later).
          registry->ObservePartition(task.node_id(), task.node_instance_id(),
                                     task.partition_id(),
                                     result->leader_epoch(), m.applied_index());
        }
        TaskOutcome outcome;
        outcome.path = snapshot::Repository::PartitionManifestPath(
            m.snapshot_id(), m.partition_id());
        outcome.manifest = std::move(*result->mutable_manifest());
        // What the partition now leads with.
        outcome.manifest.set_leader_epoch(result->leader_epoch());
        std::move(done)(std::move(outcome));
      });
}

absl::AnyInvocable<absl::Status() &&> RestoreKind::PrepareCommit(
    const Job& job, absl::Time now) {
  return [] { return absl::OkStatus(); };
}

void RestoreKind::DescribeCommit(const std::string& job_id, bool partial,
                                 int failed, int total,
                                 const std::string& first_failed,
                                 shutter::v1::Snapshot* header) const {
  if (partial) {
    header->set_error(absl::StrCat(
        failed, " of ", total,
        " partitions not restored (the others are); first: ", first_failed));
  }
}

absl::Status RestoreKind::Rollback(const std::string& job_id) {
  return absl::OkStatus();
}

void RestoreKind::CancelOnNode(const std::string& address,
                               const std::string& job_id) {
  transport_->CancelRestores(address, job_id);
}

}  // namespace shutter::controller
