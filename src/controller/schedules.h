#ifndef SHUTTER_CONTROLLER_SCHEDULES_H_
#define SHUTTER_CONTROLLER_SCHEDULES_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/timer.h"
#include "controller/job_engine.h"
#include "controller/job_store.h"
#include "controller/maintenance.h"
#include "shutter/v1/admin.pb.h"

namespace shutter::controller {

// Snapshot schedules: an interval or a cron expression, what to snapshot,
// and a retention policy for the schedule's own snapshots. Each schedule
// is one record in the job store (schedule/<name>, a shutter.v1.Schedule),
// written before any change is acknowledged, so schedules, their counters
// and the time of their last success survive restarts.
//
// A tick (every `poll`) starts the due schedules' snapshots. A schedule
// never overlaps itself: if its previous snapshot is still running when
// it is due, the tick is skipped and counted (skipped, last_skip_reason);
// a snapshot that cannot start (no leader, unknown partition) is counted
// the same way. Ticks missed while the controller was down are not made
// up: the schedule runs once at start-up if due, then keeps its cadence.
//
// Thread-safe. Everything passed in must outlive the runner.
class ScheduleRunner {
 public:
  struct Options {
    absl::Duration poll = absl::Seconds(1);
    // The shortest interval (`every`) a schedule may have.
    absl::Duration min_every = absl::Minutes(1);
  };

  ScheduleRunner(const Options& options, JobEngine* coordinator,
                 Maintenance* maintenance, JobStore* store, Timer* timer,
                 Clock* clock);

  // Loads the schedules and starts ticking.
  absl::Status Start() ABSL_LOCKS_EXCLUDED(mu_);
  // Stops ticking (the timer's Shutdown drops a pending tick).
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  absl::StatusOr<shutter::v1::Schedule> Create(
      const shutter::v1::Schedule& schedule) ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<shutter::v1::Schedule> List() const ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<shutter::v1::Schedule> SetPaused(const std::string& name,
                                                  bool paused)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Delete(const std::string& name) ABSL_LOCKS_EXCLUDED(mu_);

  // A snapshot committed (COMMITTED or PARTIAL), or a verify passed:
  // records the schedule's success and, for a snapshot, asks for its
  // retention.
  void OnCommit(const std::string& snapshot_id) ABSL_LOCKS_EXCLUDED(mu_);

  // Runs one tick now (tests; Start() ticks by itself).
  void Tick() ABSL_LOCKS_EXCLUDED(mu_);

  // When `s` next runs after `after`. INVALID_ARGUMENT for a bad
  // interval or cron expression.
  static absl::StatusOr<absl::Time> NextRun(
      const shutter::v1::Schedule& s, absl::Time after,
      absl::Duration min_every = absl::Minutes(1));

 private:
  absl::Status Persist(const shutter::v1::Schedule& s)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What a verify schedule checks: the engine's newest COMMITTED or PARTIAL
  // snapshot; FAILED_PRECONDITION if there is none.
  absl::StatusOr<std::string> NewestCommittedSnapshot() const;
  void ScheduleTick() ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  JobEngine* const coordinator_;
  Maintenance* const maintenance_;
  JobStore* const store_;
  Timer* const timer_;
  Clock* const clock_;

  // Serializes ticks (a tick starts snapshots outside mu_).
  absl::Mutex tick_mu_;
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, shutter::v1::Schedule> schedules_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_SCHEDULES_H_
