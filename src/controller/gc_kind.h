#ifndef SHUTTER_CONTROLLER_GC_KIND_H_
#define SHUTTER_CONTROLLER_GC_KIND_H_

#include <deque>
#include <functional>
#include <map>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "controller/job_kind.h"
#include "snapshot/repository.h"

namespace shutter::controller {

class JobEngine;

// Garbage collection as a job: one task, run on the controller itself
// (Place: ControllerPlacement, one at a time), that runs the repository's
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
// Tasks run on one thread of the kind's own; Shutdown() waits for the one
// in progress. Thread-safe. The repository must outlive it.
class GcKind : public JobKind {
 public:
  // `publish_lock_dead` (may be empty): see GcOptions::publish_lock_dead.
  GcKind(snapshot::Repository* repo, absl::Duration wait_for_publishes,
         std::function<bool(const snapshot::PublishLock&)> publish_lock_dead);
  ~GcKind() override;

  shutter::v1::JobType type() const override {
    return shutter::v1::JOB_TYPE_GC;
  }
  const char* name() const override { return "gc"; }

  absl::StatusOr<NodeRegistry::Leader> Place(
      const NodeRegistry& registry, uint32_t partition_id) const override {
    return ControllerPlacement();
  }
  void RunTask(const shutter::v1::Snapshot& job,
               const shutter::v1::PartitionTask& task,
               const std::string& address, TaskCallback done) override
      ABSL_LOCKS_EXCLUDED(mu_);
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
  absl::Status Rollback(const std::string& job_id) override {
    return absl::OkStatus();
  }
  void CancelOnNode(const std::string& address,
                    const std::string& job_id) override {}
  void Shutdown() override ABSL_LOCKS_EXCLUDED(mu_);

  // The error of the job's collection, as the repository gave it; OK if it
  // did not fail (or this process did not run it).
  absl::Status TaskError(const std::string& job_id) const
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Work {
    std::string job_id;
    int64_t grace_seconds = 0;
    TaskCallback done;
  };
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);

  snapshot::Repository* const repo_;
  const absl::Duration wait_for_publishes_;
  const std::function<bool(const snapshot::PublishLock&)> publish_lock_dead_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Work> queue_ ABSL_GUARDED_BY(mu_);
  // What each collection of this process found or why it failed, by job.
  // (reports_ until the job's commit takes its figures.)
  mutable std::map<std::string, shutter::v1::CollectGarbageResponse> reports_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::Status> errors_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// The repository's report as the API's message.
void CopyGcReport(const snapshot::GcReport& report,
                  shutter::v1::CollectGarbageResponse* r);

// The front door of garbage collection (AdminService.CollectGarbage
// without dry_run): refuses (FAILED_PRECONDITION) while a collection job
// is running, submits a GC job with `grace_seconds` (>= 0) and waits up to
// `timeout` for it. Returns what it found and deleted (gc_id = the job's
// id), or the collection's error (FAILED_PRECONDITION: another collection
// holds the repository's lock; UNAVAILABLE: publishes kept running).
absl::StatusOr<shutter::v1::CollectGarbageResponse> RunGarbageCollection(
    JobEngine& engine, int64_t grace_seconds, absl::Duration timeout);

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_GC_KIND_H_
