#include "controller/maintenance.h"

#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "common/thread_name.h"
#include "controller/delete_kind.h"
#include "controller/gc_kind.h"
#include "controller/job_states.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {

using shutter::v1::ApplyRetentionRequest;
using shutter::v1::ApplyRetentionResponse;
using shutter::v1::CollectGarbageRequest;
using shutter::v1::CollectGarbageResponse;
using shutter::v1::GcJobRecord;
using shutter::v1::RetentionPolicy;

namespace {
constexpr char kGcPrefix[] = "gc/";

bool PolicyIsEmpty(const RetentionPolicy& p) {
  return p.keep_last() == 0 && p.keep_within_seconds() == 0 &&
         p.keep_labels().empty();
}

}  // namespace

Maintenance::Maintenance(const Options& options, JobEngine* coordinator,
                         snapshot::Repository* repo, JobStore* store,
                         Clock* clock)
    : options_(options),
      coordinator_(coordinator),
      repo_(repo),
      store_(store),
      clock_(clock) {}

Maintenance::~Maintenance() { Shutdown(); }

absl::Status Maintenance::CheckPolicy(const RetentionPolicy& policy) {
  if (policy.keep_within_seconds() < 0) {
    return absl::InvalidArgumentError(
        "keep_within_seconds must not be negative");
  }
  for (const std::string& label : policy.keep_labels()) {
    RETURN_IF_ERROR(CheckPrintableText("keep label", label));
  }
  return absl::OkStatus();
}

ApplyRetentionResponse Maintenance::Plan(
    const RetentionPolicy& policy,
    const std::vector<shutter::v1::SnapshotSummary>& snapshots,
    absl::Time now) {
  ApplyRetentionResponse out;
  *out.mutable_policy() = policy;
  const std::set<std::string> labels(policy.keep_labels().begin(),
                                     policy.keep_labels().end());
  bool newest_seen = false;
  uint32_t usable_rank = 0;
  std::vector<std::string> doomed;
  // The newest committed snapshot is always kept; if none is committed,
  // the newest partial one stands in for it.
  bool any_committed = false;
  for (const auto& s : snapshots) {
    any_committed |= s.state() == shutter::v1::SNAPSHOT_STATE_COMMITTED;
  }
  for (const auto& s : snapshots) {
    if (!IsUsable(s.state())) continue;
    const uint32_t rank = usable_rank++;
    std::string reason;
    if (!newest_seen && (s.state() == shutter::v1::SNAPSHOT_STATE_COMMITTED ||
                         !any_committed)) {
      newest_seen = true;
      reason = "newest";
    } else if (s.pinned()) {
      reason = "pinned";
    } else if (PolicyIsEmpty(policy)) {
      reason = "no policy";
    } else if (rank < policy.keep_last()) {
      reason = "keep-last";
    } else if (policy.keep_within_seconds() > 0 &&
               absl::FromUnixMicros(s.created_at_micros()) >
                   now - absl::Seconds(policy.keep_within_seconds())) {
      reason = "keep-within";
    } else if (labels.count(s.label()) > 0) {
      reason = "label";
    }
    if (reason.empty()) {
      doomed.push_back(s.snapshot_id());
    } else {
      auto* k = out.add_kept();
      k->set_snapshot_id(s.snapshot_id());
      k->set_reason(reason);
    }
  }
  for (auto it = doomed.rbegin(); it != doomed.rend(); ++it) {
    out.add_deleted(*it);
  }
  return out;
}

absl::StatusOr<ApplyRetentionResponse> Maintenance::ApplyRetention(
    const ApplyRetentionRequest& request, const std::string& schedule) {
  const RetentionPolicy& policy =
      request.has_policy() ? request.policy() : options_.retention;
  RETURN_IF_ERROR(CheckPolicy(policy));
  std::vector<shutter::v1::SnapshotSummary> snapshots =
      coordinator_->ListSnapshots(0);
  if (!schedule.empty()) {
    std::vector<shutter::v1::SnapshotSummary> mine;
    for (auto& s : snapshots) {
      if (s.schedule() == schedule) mine.push_back(std::move(s));
    }
    snapshots.swap(mine);
  }
  ApplyRetentionResponse plan = Plan(policy, snapshots, clock_->Now());
  plan.set_dry_run(request.dry_run());
  if (request.dry_run()) return plan;
  ApplyRetentionResponse done = plan;
  done.clear_deleted();
  for (const std::string& id : plan.deleted()) {
    auto s = DeleteSnapshotJob(*coordinator_, id, /*force=*/false,
                               options_.job_timeout);
    if (!s.ok()) {
      return absl::Status(
          s.status().code(),
          absl::StrCat("retention deleted ", done.deleted_size(), " of ",
                       plan.deleted_size(),
                       " snapshots, then: ", s.status().message()));
    }
    done.add_deleted(id);
    spdlog::info("retention: deleted snapshot {}", id);
  }
  return done;
}

absl::Status Maintenance::PutGcRecord(const GcJobRecord& record) {
  return store_->PutRecord(absl::StrCat(kGcPrefix, record.gc_id()),
                           record.SerializeAsString());
}

absl::StatusOr<CollectGarbageResponse> Maintenance::FinishLegacyGc(
    GcJobRecord record) {
  snapshot::GcOptions o;
  o.dry_run = false;
  o.grace = absl::Seconds(record.grace_seconds());
  o.owner = record.gc_id();
  o.wait_for_publishes = options_.gc_wait_for_publishes;
  // A publish lock whose task this controller has finished (or whose job
  // ended) belongs to an attempt that is over -- its node died mid-upload,
  // or a retry published instead: do not wait for it.
  o.publish_lock_dead = [this](const snapshot::PublishLock& l) {
    return coordinator_->AttemptIsOver(l.snapshot_id, l.partition_id);
  };
  auto report = repo_->CollectGarbage(o);
  record.set_finished_at_micros(absl::ToUnixMicros(clock_->Now()));
  CollectGarbageResponse& r = *record.mutable_result();
  r.set_gc_id(record.gc_id());
  r.set_grace_seconds(record.grace_seconds());
  if (report.ok()) {
    record.set_state("DONE");
    CopyGcReport(*report, &r);
    spdlog::info(
        "garbage collection {}: {} objects scanned, {} deleted ({} bytes), {} "
        "too young",
        record.gc_id(), r.objects_scanned(), r.objects_deleted(),
        r.bytes_deleted(), r.objects_too_young());
  } else {
    // Another collection holding the lock, or publishes that kept running
    // (nothing was deleted), end the record quietly: the operator may ask
    // again. Anything else is an error worth the log.
    record.set_state("FAILED");
    record.set_error(StatusText(report.status()));
    if (!absl::IsFailedPrecondition(report.status()) &&
        !absl::IsUnavailable(report.status())) {
      spdlog::error("garbage collection {} failed: {}", record.gc_id(),
                    report.status().ToString());
    }
  }
  absl::Status put = PutGcRecord(record);
  if (!put.ok()) {
    spdlog::error("cannot record garbage collection {}: {}", record.gc_id(),
                  put.ToString());
  }
  RETURN_IF_ERROR(report.status());
  return r;
}

absl::StatusOr<CollectGarbageResponse> Maintenance::CollectGarbage(
    const CollectGarbageRequest& request) {
  if (request.grace_seconds() < 0) {
    return absl::InvalidArgumentError("grace_seconds must not be negative");
  }
  const int64_t grace = request.has_grace_seconds()
                            ? request.grace_seconds()
                            : absl::ToInt64Seconds(options_.gc_grace);
  if (request.dry_run()) {
    snapshot::GcOptions o;
    o.dry_run = true;
    o.grace = absl::Seconds(grace);
    ASSIGN_OR_RETURN(snapshot::GcReport report, repo_->CollectGarbage(o));
    CollectGarbageResponse r;
    r.set_dry_run(true);
    r.set_grace_seconds(grace);
    CopyGcReport(report, &r);
    return r;
  }
  ASSIGN_OR_RETURN(std::optional<std::string> earlier,
                   coordinator_->FindRequest(request.request_id(),
                                             shutter::v1::JOB_TYPE_GC));
  if (earlier) {
    // A repeated call (e.g. retried on a new leader): the first one's job.
    return RunGarbageCollection(*coordinator_, grace, options_.job_timeout,
                                request.request_id());
  }
  {
    absl::MutexLock l(&mu_);
    if (gc_running_) {
      return absl::FailedPreconditionError(
          "a garbage collection is already running");
    }
    gc_running_ = true;
  }
  // A job of its own (GcKind): durable, resumed after a crash, listed.
  absl::StatusOr<CollectGarbageResponse> out = RunGarbageCollection(
      *coordinator_, grace, options_.job_timeout, request.request_id());
  absl::MutexLock l(&mu_);
  gc_running_ = false;
  return out;
}

absl::StatusOr<shutter::v1::GetRepositoryStatsResponse>
Maintenance::GetRepositoryStats() const {
  ASSIGN_OR_RETURN(snapshot::RepositoryStats st, repo_->GetStats());
  shutter::v1::GetRepositoryStatsResponse r;
  r.set_repository(repo_->Describe());
  r.set_snapshots(st.snapshots);
  r.set_uncommitted_snapshots(st.uncommitted_snapshots);
  r.set_objects(st.objects);
  r.set_bytes_stored(st.bytes_stored);
  r.set_logical_bytes(st.logical_bytes);
  r.set_bytes_shared(st.bytes_shared);
  r.set_incomplete_uploads(st.incomplete_uploads);
  return r;
}

void Maintenance::Start() {
  std::vector<GcJobRecord> running;
  absl::Status s =
      store_->Scan(kGcPrefix, [&](absl::string_view, absl::string_view value) {
        GcJobRecord r;
        if (r.ParseFromArray(value.data(), static_cast<int>(value.size())) &&
            r.state() == "RUNNING") {
          running.push_back(r);
        }
        return absl::OkStatus();
      });
  if (!s.ok()) spdlog::error("cannot read GC records: {}", s.ToString());
  absl::MutexLock l(&mu_);
  resume_gc_ = std::move(running);
  resume_deletes_ = true;
  worker_ = std::thread([this] {
    NameThisThread("maintenance");
    WorkerLoop();
  });
}

void Maintenance::Shutdown() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (worker_.joinable()) worker_.join();
}

void Maintenance::RequestRetention() {
  absl::MutexLock l(&mu_);
  retention_pending_ = true;
}

void Maintenance::RequestScheduleRetention(const std::string& schedule,
                                           const RetentionPolicy& policy) {
  absl::MutexLock l(&mu_);
  schedule_retention_[schedule] = policy;
}

void Maintenance::WaitIdleForTesting() {
  absl::MutexLock l(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ ||
           (!retention_pending_ && !worker_busy_ && resume_gc_.empty() &&
            !resume_deletes_ && schedule_retention_.empty());
  };
  mu_.Await(absl::Condition(&idle));
}

void Maintenance::WorkerLoop() {
  for (;;) {
    std::vector<GcJobRecord> gcs;
    std::map<std::string, RetentionPolicy> per_schedule;
    bool deletes = false, retention = false;
    {
      absl::MutexLock l(&mu_);
      auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || retention_pending_ || !resume_gc_.empty() ||
               resume_deletes_ || !schedule_retention_.empty();
      };
      mu_.Await(absl::Condition(&work));
      if (stopping_) return;
      gcs.swap(resume_gc_);
      per_schedule.swap(schedule_retention_);
      deletes = resume_deletes_;
      retention = retention_pending_;
      resume_deletes_ = retention_pending_ = false;
      worker_busy_ = true;
      if (!gcs.empty()) gc_running_ = true;
    }
    for (const GcJobRecord& r : gcs) {
      spdlog::warn(
          "finishing garbage collection {}, which an earlier controller left "
          "running",
          r.gc_id());
      FinishLegacyGc(r).IgnoreError();
    }
    if (!gcs.empty()) {
      absl::MutexLock l(&mu_);
      gc_running_ = false;
    }
    if (deletes) {
      for (const std::string& id : coordinator_->InterruptedDeletes()) {
        spdlog::warn("finishing the deletion of snapshot {}", id);
        auto s = DeleteSnapshotJob(*coordinator_, id, /*force=*/true,
                                   options_.job_timeout);
        if (!s.ok()) {
          spdlog::error("deleting snapshot {}: {}", id, s.status().ToString());
        }
      }
    }
    int deleted = 0;
    for (const auto& [schedule, policy] : per_schedule) {
      if (PolicyIsEmpty(policy)) continue;
      ApplyRetentionRequest req;
      *req.mutable_policy() = policy;
      auto r = ApplyRetention(req, schedule);
      if (!r.ok()) {
        spdlog::error("retention of schedule {}: {}", schedule,
                      r.status().ToString());
      } else {
        deleted += r->deleted_size();
      }
    }
    if (retention && !PolicyIsEmpty(options_.retention)) {
      auto r = ApplyRetention(ApplyRetentionRequest());
      if (!r.ok()) {
        spdlog::error("retention: {}", r.status().ToString());
      } else {
        deleted += r->deleted_size();
      }
    }
    if (deleted > 0 && options_.gc_after_retention) {
      auto gc = CollectGarbage(CollectGarbageRequest());
      if (!gc.ok()) {
        spdlog::warn("garbage collection after retention: {}",
                     gc.status().ToString());
      }
    }
    absl::MutexLock l(&mu_);
    worker_busy_ = false;
  }
}

}  // namespace shutter::controller
