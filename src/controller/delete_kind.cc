#include "controller/delete_kind.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "controller/job_engine.h"
#include "controller/job_states.h"

namespace shutter::controller {

using shutter::v1::Snapshot;

void DeleteKind::RunTask(const Snapshot& job, const shutter::v1::PartitionTask&,
                         const std::string&, TaskCallback done) {
  worker().Run(
      job.snapshot_id(),
      [this,
       source = job.source_snapshot_id()]() -> absl::StatusOr<TaskOutcome> {
        RETURN_IF_ERROR(repo_->DeleteSnapshot(source));
        return TaskOutcome{};
      },
      std::move(done));
}

FailureClass DeleteKind::Classify(const absl::Status& error) const {
  switch (error.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kAborted:
      return FailureClass::kTransient;
    default:
      return FailureClass::kPermanent;
  }
}

absl::AnyInvocable<absl::Status() &&> DeleteKind::PrepareCommit(const Job& job,
                                                                absl::Time) {
  return [engine = engine_, source = job.header().source_snapshot_id()] {
    return engine->MarkDeleted(source);
  };
}

absl::StatusOr<Snapshot> DeleteSnapshotJob(JobEngine& engine,
                                           const std::string& snapshot_id,
                                           bool force, absl::Duration timeout) {
  ASSIGN_OR_RETURN(Snapshot h, engine.RequestDelete(snapshot_id, force));
  if (h.state() == shutter::v1::SNAPSHOT_STATE_DELETED) return h;
  std::string job_id;
  for (const auto& s : engine.ListSnapshots(0, shutter::v1::JOB_TYPE_DELETE)) {
    if (!IsFinished(s.state()) && s.source_snapshot_id() == snapshot_id) {
      job_id = s.snapshot_id();  // already being deleted: wait for that one
      break;
    }
  }
  if (job_id.empty()) {
    JobPlan plan;
    plan.record.set_type(shutter::v1::JOB_TYPE_DELETE);
    plan.record.set_source_snapshot_id(snapshot_id);
    plan.record.add_partitions()->set_partition_id(0);
    plan.placements.emplace_back(0, ControllerPlacement("delete"));
    ASSIGN_OR_RETURN(job_id, engine.Submit(std::move(plan)));
  }
  ASSIGN_OR_RETURN(Snapshot d, engine.AwaitJob(job_id, timeout));
  if (d.state() != shutter::v1::SNAPSHOT_STATE_COMMITTED) {
    absl::Status cause = absl::AbortedError(
        absl::StrCat("delete job ", job_id, " ended ", StateName(d.state()),
                     d.error().empty() ? "" : ": ", d.error()));
    if (const auto* kind =
            dynamic_cast<const ControllerTaskKind*>(engine.KindOfJob(job_id))) {
      if (absl::Status e = kind->TaskError(job_id); !e.ok()) cause = e;
    }
    return absl::Status(cause.code(),
                        absl::StrCat("deleting snapshot ", snapshot_id, ": ",
                                     cause.message(), " (retry to finish)"));
  }
  ASSIGN_OR_RETURN(Snapshot out, engine.GetSnapshot(snapshot_id));
  out.clear_partitions();
  return out;
}

}  // namespace shutter::controller
