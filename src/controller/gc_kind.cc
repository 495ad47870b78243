#include "controller/gc_kind.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "controller/job_engine.h"
#include "controller/job_states.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {

using shutter::v1::CollectGarbageResponse;
using shutter::v1::Snapshot;

void CopyGcReport(const snapshot::GcReport& report, CollectGarbageResponse* r) {
  r->set_objects_scanned(report.objects_scanned);
  r->set_objects_referenced(report.objects_referenced);
  r->set_objects_deleted(report.objects_deleted);
  r->set_bytes_deleted(report.bytes_deleted);
  r->set_objects_too_young(report.objects_too_young);
  r->set_manifests_read(report.manifests_read);
  r->set_publish_locks_released(report.publish_locks_released);
  r->set_uploads_aborted(report.uploads_aborted);
  r->set_uploads_too_young(report.uploads_too_young);
  r->set_sweep_incomplete(report.sweep_incomplete);
}

void GcKind::RunTask(const Snapshot& job, const shutter::v1::PartitionTask&,
                     const std::string&, TaskCallback done) {
  const std::string id = job.snapshot_id();
  const int64_t grace = job.gc().grace_seconds();
  worker().Run(
      id,
      [this, id, grace]() -> absl::StatusOr<TaskOutcome> {
        snapshot::GcOptions o;
        o.grace = absl::Seconds(grace);
        o.owner = id;  // a resumed run takes its own lock over
        o.wait_for_publishes = wait_for_publishes_;
        // A publish lock whose task the controller has finished (or whose
        // job ended) belongs to an attempt that is over: not waited for.
        if (engine_ != nullptr) {
          o.publish_lock_dead = [engine =
                                     engine_](const snapshot::PublishLock& l) {
            return engine->AttemptIsOver(l.snapshot_id, l.partition_id);
          };
        }
        absl::StatusOr<snapshot::GcReport> report = repo_->CollectGarbage(o);
        if (!report.ok()) {
          // Another collection holding the lock, or publishes that kept
          // running (nothing was deleted), end the job quietly: the
          // operator may ask again. Anything else is worth the log.
          if (!absl::IsFailedPrecondition(report.status()) &&
              !absl::IsUnavailable(report.status())) {
            spdlog::error("garbage collection {} failed: {}", id,
                          report.status().ToString());
          }
          return report.status();
        }
        CollectGarbageResponse r;
        r.set_gc_id(id);
        r.set_grace_seconds(grace);
        CopyGcReport(*report, &r);
        spdlog::info(
            "garbage collection {}: {} objects scanned, {} deleted ({} "
            "bytes), {} too young{}",
            id, r.objects_scanned(), r.objects_deleted(), r.bytes_deleted(),
            r.objects_too_young(),
            r.sweep_incomplete() ? "; sweep stopped at its time bound" : "");
        absl::MutexLock l(&mu_);
        reports_[id] = std::move(r);
        return TaskOutcome{};
      },
      std::move(done));
}

void GcKind::DescribeCommit(const std::string& job_id, bool, int, int,
                            const std::string&, Snapshot* header) const {
  CollectGarbageResponse* g = header->mutable_gc();
  g->set_gc_id(job_id);
  absl::MutexLock l(&mu_);
  auto it = reports_.find(job_id);
  if (it != reports_.end()) {
    *g = std::move(it->second);
    reports_.erase(it);
  }
  // else: the collection finished before a controller restart that lost
  // its figures (the job still commits: the sweep is done).
}

absl::StatusOr<CollectGarbageResponse> RunGarbageCollection(
    JobEngine& engine, int64_t grace_seconds, absl::Duration timeout,
    const std::string& request_id) {
  if (grace_seconds < 0) {
    return absl::InvalidArgumentError("grace_seconds must not be negative");
  }
  std::string id;
  ASSIGN_OR_RETURN(std::optional<std::string> earlier,
                   engine.FindRequest(request_id, shutter::v1::JOB_TYPE_GC));
  if (earlier) {
    // A repeated call: wait for, and answer with, the first one's job.
    ASSIGN_OR_RETURN(Snapshot h, AwaitControllerJob(engine, *earlier, timeout));
    CollectGarbageResponse r = h.gc();
    r.set_gc_id(*earlier);
    return r;
  }
  for (const auto& s : engine.ListSnapshots(0, shutter::v1::JOB_TYPE_GC)) {
    if (!IsFinished(s.state())) {
      return absl::FailedPreconditionError(
          absl::StrCat("a garbage collection is already running (job ",
                       s.snapshot_id(), ")"));
    }
  }
  JobPlan plan = ControllerJobPlan(shutter::v1::JOB_TYPE_GC);
  plan.record.set_label("gc");
  plan.record.set_request_id(request_id);
  plan.record.mutable_gc()->set_grace_seconds(grace_seconds);
  ASSIGN_OR_RETURN(id, engine.Submit(std::move(plan)));
  ASSIGN_OR_RETURN(Snapshot h, AwaitControllerJob(engine, id, timeout));
  CollectGarbageResponse r = h.gc();
  r.set_gc_id(id);
  return r;
}

}  // namespace shutter::controller
