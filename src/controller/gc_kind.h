#ifndef SHUTTER_CONTROLLER_GC_KIND_H_
#define SHUTTER_CONTROLLER_GC_KIND_H_

#include <functional>
#include <map>
#include <string>

#include "absl/synchronization/mutex.h"
#include "controller/job_kind.h"
#include "controller/kind_worker.h"
#include "snapshot/repository.h"

namespace shutter::controller {

class JobEngine;

// Garbage collection as a job: one task, run on the controller itself
// (Place: ControllerPlacement("gc"), one at a time), that runs the repository's
// mark-and-sweep (Repository::CollectGarbage) with the job's grace period
// (header.gc().grace_seconds()) under a repository lock owned by the job's
// id -- so a collection a controller crash interrupted is resumed by the
// engine like any job, and takes its own lock over. When it is done the
// job is COMMITTED with what it found in header.gc(); a collection that
// could not run (another holds the lock: FAILED_PRECONDITION; publishes
// that kept running: UNAVAILABLE) fails its job at once, without retries
// (Classify: permanent) -- the operator or the next retention pass asks
// again. Cancel: a collection in progress finishes (its sweep is bounded
// by GcOptions::max_sweep). Nothing to roll back.
//
// Tasks run on the kind's own KindWorker; Shutdown() waits for the one in
// progress. Thread-safe. The repository must outlive it.
class GcKind : public ControllerTaskKind {
 public:
  // A publish lock whose attempt the engine this kind is bound to has
  // finished (JobEngine::AttemptIsOver) is not waited for.
  GcKind(snapshot::Repository* repo, absl::Duration wait_for_publishes)
      : repo_(repo), wait_for_publishes_(wait_for_publishes) {}
  ~GcKind() override { Shutdown(); }

  shutter::v1::JobType type() const override {
    return shutter::v1::JOB_TYPE_GC;
  }
  const char* name() const override { return "gc"; }
  void Bind(JobEngine* engine) override { engine_ = engine; }

  void RunTask(const shutter::v1::Snapshot& job,
               const shutter::v1::PartitionTask& task,
               const std::string& address, TaskCallback done) override;
  FailureClass Classify(const absl::Status& error) const override {
    return FailureClass::kPermanent;
  }
  absl::AnyInvocable<absl::Status() &&> PrepareCommit(const Job& job,
                                                      absl::Time now) override {
    return [] { return absl::OkStatus(); };
  }
  void DescribeCommit(const std::string& job_id, bool partial, int failed,
                      int total, const std::string& first_failed,
                      shutter::v1::Snapshot* header) const override
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  snapshot::Repository* const repo_;
  const absl::Duration wait_for_publishes_;
  JobEngine* engine_ = nullptr;

  mutable absl::Mutex mu_;
  // What each collection of this process found, by job, until the job's
  // commit takes its figures.
  mutable std::map<std::string, shutter::v1::CollectGarbageResponse> reports_
      ABSL_GUARDED_BY(mu_);
};

// The repository's report as the API's message.
void CopyGcReport(const snapshot::GcReport& report,
                  shutter::v1::CollectGarbageResponse* r);

// The front door of garbage collection (AdminService.CollectGarbage
// without dry_run): refuses (FAILED_PRECONDITION) while a collection job
// is running, submits a GC job with `grace_seconds` (>= 0) and waits up to
// `timeout` for it. Returns what it found and deleted (gc_id = the job's
// id), or the collection's error (FAILED_PRECONDITION: another collection
// holds the repository's lock; UNAVAILABLE: publishes kept running). A
// repeated call with the same non-empty `request_id` waits for the first
// one's job instead.
absl::StatusOr<shutter::v1::CollectGarbageResponse> RunGarbageCollection(
    JobEngine& engine, int64_t grace_seconds, absl::Duration timeout,
    const std::string& request_id = "");

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_GC_KIND_H_
