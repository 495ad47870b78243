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
    JobPlan plan = ControllerJobPlan(shutter::v1::JOB_TYPE_DELETE);
    plan.record.set_source_snapshot_id(snapshot_id);
    ASSIGN_OR_RETURN(job_id, engine.Submit(std::move(plan)));
  }
  if (absl::Status s = AwaitControllerJob(engine, job_id, timeout).status();
      !s.ok()) {
    return absl::Status(s.code(),
                        absl::StrCat("deleting snapshot ", snapshot_id, ": ",
                                     s.message(), " (retry to finish)"));
  }
  ASSIGN_OR_RETURN(Snapshot out, engine.GetSnapshot(snapshot_id));
  out.clear_partitions();
  return out;
}

}  // namespace shutter::controller
