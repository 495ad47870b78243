#ifndef SHUTTER_CONTROLLER_DELETE_KIND_H_
#define SHUTTER_CONTROLLER_DELETE_KIND_H_

#include <functional>
#include <string>

#include "controller/job_kind.h"
#include "controller/kind_worker.h"
#include "snapshot/repository.h"

namespace shutter::controller {

class JobEngine;

// Deleting a finished snapshot as a job: one task, run on the controller
// itself (Place: ControllerPlacement("delete")), that removes the
// snapshot header.source_snapshot_id() from the repository
// (Repository::DeleteSnapshot: its cluster manifest first, so it stops
// being a snapshot at once, then its own objects; shared SSTs stay for GC).
// Its commit records the snapshot DELETED (JobEngine::MarkDeleted of the
// engine it is bound to). The deletion is asked for durably before the
// job exists (JobEngine::RequestDelete), and the repository's delete is
// idempotent, so a crash at any point is finished: by the engine resuming
// the job, or, if it was never created, by Maintenance at start
// (JobEngine::InterruptedDeletes). A repository error that may pass
// (unavailable, timeout, throttled) is retried with backoff; others fail
// the job, leaving the snapshot marked for deletion, to be retried by
// the operator or the next start. Cancel: what was deleted stays deleted.
// Thread-safe; the repository must outlive it.
class DeleteKind : public ControllerTaskKind {
 public:
  explicit DeleteKind(snapshot::Repository* repo) : repo_(repo) {}
  ~DeleteKind() override { Shutdown(); }

  shutter::v1::JobType type() const override {
    return shutter::v1::JOB_TYPE_DELETE;
  }
  const char* name() const override { return "delete"; }
  void Bind(JobEngine* engine) override { engine_ = engine; }

  void RunTask(const shutter::v1::Snapshot& job,
               const shutter::v1::PartitionTask& task,
               const std::string& address, TaskCallback done) override;
  FailureClass Classify(const absl::Status& error) const override {
    return ClassifyByCode(error.code());
  }
  absl::AnyInvocable<absl::Status() &&> PrepareCommit(const Job& job,
                                                      absl::Time now) override;
  void DescribeCommit(const std::string& job_id, bool partial, int failed,
                      int total, const std::string& first_failed,
                      shutter::v1::Snapshot* header) const override {}
  bool CancelKeepsOutcomes() const override { return true; }

 private:
  snapshot::Repository* const repo_;
  JobEngine* engine_ = nullptr;
};

// The front door of deletion (AdminService.DeleteSnapshot, retention):
// JobEngine::RequestDelete (checks; durable delete_requested), then a
// delete job for the snapshot -- or the one already running for it -- and
// waits up to `timeout` for it. Returns the snapshot's fields (DELETED).
// The repository's error (its code, "... (retry to finish)") if the job
// failed.
absl::StatusOr<shutter::v1::Snapshot> DeleteSnapshotJob(
    JobEngine& engine, const std::string& snapshot_id, bool force,
    absl::Duration timeout = absl::Hours(1));

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_DELETE_KIND_H_
