#ifndef SHUTTER_CONTROLLER_MAINTENANCE_H_
#define SHUTTER_CONTROLLER_MAINTENANCE_H_

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "controller/job_engine.h"
#include "controller/job_store.h"
#include "shutter/v1/admin.pb.h"
#include "snapshot/repository.h"

namespace shutter::controller {

// Repository upkeep on the controller: retention (which committed
// snapshots to delete), deletions (delete jobs: DeleteSnapshotJob; at
// Start() it finishes deletions a crash left asked-for but never
// started), and garbage collection, which runs as a job of the
// engine (GcKind: durable, resumed after a crash under its own repository
// lock, listed with the other jobs). Collections an earlier controller
// recorded as gc/<id> records and left running are finished at Start().
//
// One background worker runs retention passes asked for after commits
// (RequestRetention) and resumes interrupted work at Start(). Operator
// calls (ApplyRetention, CollectGarbage) run on the caller's thread; only
// one garbage collection runs at a time. Thread-safe. The coordinator,
// repository, store and clock must outlive it.
class Maintenance {
 public:
  struct Options {
    // The configured policy (no rule set: retention keeps everything).
    shutter::v1::RetentionPolicy retention;
    // Objects younger than this are never collected.
    absl::Duration gc_grace = absl::Hours(1);
    // Run a collection after a retention pass that deleted something.
    bool gc_after_retention = true;
    // How long a collection waits for in-flight publishes (the GC kind's
    // own setting is KindContext::gc_wait_for_publishes; this one is for
    // collections an earlier controller left running).
    absl::Duration gc_wait_for_publishes = absl::Seconds(60);
    // How long a collection or a deletion waits for its job.
    absl::Duration job_timeout = absl::Hours(1);
  };

  Maintenance(const Options& options, JobEngine* coordinator,
              snapshot::Repository* repo, JobStore* store, Clock* clock);
  ~Maintenance();

  // Starts the worker; it finishes deletions and collections a crash
  // interrupted.
  void Start() ABSL_LOCKS_EXCLUDED(mu_);
  // Stops the worker (a pass in progress finishes first). Idempotent.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  // Asks the worker for a retention pass with the configured policy.
  void RequestRetention() ABSL_LOCKS_EXCLUDED(mu_);
  // Asks the worker to apply `policy` to the snapshots of one schedule.
  void RequestScheduleRetention(const std::string& schedule,
                                const shutter::v1::RetentionPolicy& policy)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Applies request.policy (or the configured one if unset) now; with
  // `schedule`, only to that schedule's snapshots.
  absl::StatusOr<shutter::v1::ApplyRetentionResponse> ApplyRetention(
      const shutter::v1::ApplyRetentionRequest& request,
      const std::string& schedule = "");

  // Runs a garbage collection (see AdminService.CollectGarbage).
  absl::StatusOr<shutter::v1::CollectGarbageResponse> CollectGarbage(
      const shutter::v1::CollectGarbageRequest& request)
      ABSL_LOCKS_EXCLUDED(mu_);

  absl::StatusOr<shutter::v1::GetRepositoryStatsResponse> GetRepositoryStats()
      const;

  // Waits until the worker has nothing to do (tests).
  void WaitIdleForTesting() ABSL_LOCKS_EXCLUDED(mu_);

  // The decisions of `policy` over `snapshots` (ListSnapshots order:
  // newest first) at `now`: what to delete (oldest first) and why the
  // others are kept. Pure.
  static shutter::v1::ApplyRetentionResponse Plan(
      const shutter::v1::RetentionPolicy& policy,
      const std::vector<shutter::v1::SnapshotSummary>& snapshots,
      absl::Time now);

  // INVALID_ARGUMENT for a negative duration or a bad label.
  static absl::Status CheckPolicy(const shutter::v1::RetentionPolicy& policy);

 private:
  void WorkerLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // Finishes the collection an earlier controller recorded in `record`
  // (gc/<id>) and left running, and records the outcome there.
  absl::StatusOr<shutter::v1::CollectGarbageResponse> FinishLegacyGc(
      shutter::v1::GcJobRecord record);
  absl::Status PutGcRecord(const shutter::v1::GcJobRecord& record);

  const Options options_;
  JobEngine* const coordinator_;
  snapshot::Repository* const repo_;
  JobStore* const store_;
  Clock* const clock_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool retention_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool worker_busy_ ABSL_GUARDED_BY(mu_) = false;
  bool gc_running_ ABSL_GUARDED_BY(mu_) = false;
  // Collections a crash interrupted, for the worker to resume.
  std::vector<shutter::v1::GcJobRecord> resume_gc_ ABSL_GUARDED_BY(mu_);
  bool resume_deletes_ ABSL_GUARDED_BY(mu_) = false;
  // Schedule name -> its policy, for the worker.
  std::map<std::string, shutter::v1::RetentionPolicy> schedule_retention_
      ABSL_GUARDED_BY(mu_);
  std::thread worker_;
};

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_MAINTENANCE_H_
