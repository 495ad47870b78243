#ifndef SHUTTER_CONTROLLER_KIND_WORKER_H_
#define SHUTTER_CONTROLLER_KIND_WORKER_H_

#include <deque>
#include <map>
#include <string>
#include <thread>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "controller/job_kind.h"
#include "controller/job_records.h"

namespace shutter::controller {

// The thread on which a kind whose tasks run on the controller itself
// (JobKind::Place: ControllerPlacement) runs their bodies, one at a time
// in order, so that the engine's dispatch threads never block on them.
// Remembers the last error of each job's task for its front door
// (LastError). Shutdown() waits for the body in progress and answers the
// ones not started with UNAVAILABLE (the engine, stopping, records nothing
// for them: their jobs resume at the next start). Thread-safe.
class KindWorker {
 public:
  using Body = absl::AnyInvocable<absl::StatusOr<TaskOutcome>() &&>;

  KindWorker();
  ~KindWorker();  // Shutdown()

  // Runs `body` for job `job_id` on the worker thread, then `done` with
  // its result; UNAVAILABLE at once after Shutdown().
  void Run(const std::string& job_id, Body body, JobKind::TaskCallback done)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The error of the job's last body; OK if it succeeded or never ran.
  absl::Status LastError(const std::string& job_id) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Idempotent.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Work {
    std::string job_id;
    Body body;
    JobKind::TaskCallback done;
  };
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Work> queue_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::Status> errors_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// A kind whose tasks run on the controller itself, one at a time in its
// own lane (ControllerPlacement(KindName(type()))), on a KindWorker of its
// own: what
// such kinds share (no node to cancel on, nothing to roll back unless the
// kind says otherwise, a worker to stop). Subclasses run their bodies with
// worker().Run and call Shutdown() first in their destructor.
class ControllerTaskKind : public JobKind {
 public:
  absl::StatusOr<NodeRegistry::Leader> Place(
      const NodeRegistry& registry, uint32_t partition_id) const override {
    return ControllerPlacement(KindName(type()));
  }
  absl::Status Rollback(const std::string& job_id) override {
    return absl::OkStatus();
  }
  void CancelOnNode(const std::string& address,
                    const std::string& job_id) override {}
  void Shutdown() override { worker_.Shutdown(); }

  // The error of the job's task as its body returned it (the front door
  // answers with it); OK if it did not fail or this process did not run it.
  absl::Status TaskError(const std::string& job_id) const {
    return worker_.LastError(job_id);
  }

 protected:
  KindWorker& worker() { return worker_; }

 private:
  KindWorker worker_;
};

// For the front doors of ControllerTaskKinds: a plan for a job of `type`
// with one task (partition 0) on the controller, in its kind's lane.
JobPlan ControllerJobPlan(shutter::v1::JobType type);

// Waits up to `timeout` for such a job (JobEngine::AwaitJob) and returns
// its fields if it COMMITTED; otherwise the error its task's body
// returned (ControllerTaskKind::TaskError), or ABORTED naming the job and
// how it ended; AwaitJob's errors as they are.
absl::StatusOr<shutter::v1::Snapshot> AwaitControllerJob(
    JobEngine& engine, const std::string& job_id, absl::Duration timeout);

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_KIND_WORKER_H_
