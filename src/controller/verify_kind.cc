#include "controller/verify_kind.h"

#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/error_reason.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "controller/job_engine.h"
#include "controller/snapshot_kind.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {

using shutter::v1::PartitionTask;
using shutter::v1::VerifyPartitionResponse;

void VerifyKind::RunTask(const shutter::v1::Snapshot& job,
                         const PartitionTask& task, const std::string& address,
                         TaskCallback done) {
  const std::string& job_id = job.snapshot_id();
  shutter::v1::VerifyPartitionRequest req;
  req.set_verify_id(job_id);
  req.set_snapshot_id(task.source_snapshot_id());
  req.set_partition_id(task.partition_id());
  req.set_deep(task.deep());
  req.set_expected_applied_index(task.applied_index());
  req.set_expected_instance_id(task.node_instance_id());
  req.set_expected_manifest_sha256(task.manifest_sha256());
  transport_->VerifyPartition(
      address, req, rpc_timeout_,
      [task, done = std::move(done)](
          absl::StatusOr<VerifyPartitionResponse> result) mutable {
        if (!result.ok()) {
          std::move(done)(result.status());
          return;
        }
        const auto& m = result->manifest();
        if (m.snapshot_id() != task.source_snapshot_id() ||
            m.partition_id() != task.partition_id()) {
          std::move(done)(
              WithReason(absl::InternalError(absl::StrCat(
                             "node verified snapshot ", Quote(m.snapshot_id()),
                             " partition ", m.partition_id(), "; expected ",
                             Quote(task.source_snapshot_id()), " partition ",
                             task.partition_id())),
                         ErrorReason::kMismatchedAnswer));
          return;
        }
        TaskOutcome outcome;
        outcome.path = snapshot::Repository::PartitionManifestPath(
            m.snapshot_id(), m.partition_id());
        outcome.manifest = m;
        std::move(done)(std::move(outcome));
      });
}

absl::StatusOr<std::string> StartVerify(
    JobEngine& engine, snapshot::Repository& repo,
    const shutter::v1::VerifySnapshotRequest& request) {
  const std::string& source = request.snapshot_id();
  RETURN_IF_ERROR(CheckSafeId("snapshot id", source));
  ASSIGN_OR_RETURN(
      std::optional<std::string> earlier,
      engine.FindRequest(request.request_id(), shutter::v1::JOB_TYPE_VERIFY));
  if (earlier) return *earlier;
  // One of this controller's jobs must be a finished snapshot; a snapshot
  // it does not know (another controller's) is taken from the repository.
  if (absl::Status s = engine.CheckCommittedSnapshot(source);
      !absl::IsNotFound(s)) {
    RETURN_IF_ERROR(s);
  }
  ASSIGN_OR_RETURN(const shutter::v1::ClusterManifest cm,
                   ReadCommittedSnapshot(repo, source));
  std::vector<uint32_t> ids;
  for (const auto& p : cm.partitions()) ids.push_back(p.partition_id());
  if (ids.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("snapshot ", source, " contains no partition"));
  }
  ASSIGN_OR_RETURN(auto leaders, engine.ResolveLeaders(ids));
  shutter::v1::Snapshot record;
  record.set_type(shutter::v1::JOB_TYPE_VERIFY);
  record.set_request_id(request.request_id());
  record.set_source_snapshot_id(source);
  record.set_label(cm.label());
  record.set_deep(request.deep());
  for (const auto& p : cm.partitions()) {
    PartitionTask* t = record.add_partitions();
    t->set_partition_id(p.partition_id());
    t->set_source_snapshot_id(source);
    t->set_applied_index(p.applied_index());
    t->set_manifest_sha256(p.manifest_sha256());
    t->set_deep(request.deep());
  }
  ASSIGN_OR_RETURN(std::string verify_id,
                   engine.Submit({std::move(record), std::move(leaders)}));
  spdlog::info("verify {} created: snapshot {}, {} partitions{}", verify_id,
               source, ids.size(), request.deep() ? ", deep" : "");
  return verify_id;
}

}  // namespace shutter::controller
