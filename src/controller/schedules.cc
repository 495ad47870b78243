#include "controller/schedules.h"

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "controller/cron.h"
#include "controller/job_states.h"
#include "controller/snapshot_kind.h"
#include "controller/verify_kind.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {

using shutter::v1::Schedule;

namespace {
constexpr char kSchedulePrefix[] = "schedule/";

absl::Status Validate(const Schedule& s, absl::Duration min_every) {
  RETURN_IF_ERROR(CheckSafeId("schedule name", s.name()));
  if (s.every().empty() == s.cron().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("schedule ", s.name(),
                     ": give exactly one of an interval (every) "
                     "and a cron expression"));
  }
  if (s.label().size() > kMaxLabelBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("label is ", s.label().size(), " bytes; the limit is ",
                     kMaxLabelBytes));
  }
  RETURN_IF_ERROR(CheckPrintableText("label", s.label()));
  std::set<uint32_t> seen;
  for (uint32_t p : s.partition_ids()) {
    if (!seen.insert(p).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("partition ", p, " is listed twice"));
    }
  }
  RETURN_IF_ERROR(Maintenance::CheckPolicy(s.retention()));
  if (s.job() != shutter::v1::JOB_TYPE_SNAPSHOT &&
      s.job() != shutter::v1::JOB_TYPE_VERIFY) {
    return absl::InvalidArgumentError(
        absl::StrCat("schedule ", s.name(),
                     ": it can run snapshots or "
                     "verifies, not ",
                     shutter::v1::JobType_Name(s.job())));
  }
  if (s.job() == shutter::v1::JOB_TYPE_VERIFY &&
      (!s.label().empty() || s.partition_ids_size() > 0 || s.allow_partial() ||
       s.retention().ByteSizeLong() > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "schedule ", s.name(),
        ": a verify schedule checks the newest committed snapshot whole; "
        "it takes no label, partitions, allow-partial or retention"));
  }
  if (s.deep() && s.job() != shutter::v1::JOB_TYPE_VERIFY) {
    return absl::InvalidArgumentError(
        absl::StrCat("schedule ", s.name(), ": deep is for verify schedules"));
  }
  return ScheduleRunner::NextRun(s, absl::UnixEpoch(), min_every).status();
}
}  // namespace

ScheduleRunner::ScheduleRunner(const Options& options, JobEngine* coordinator,
                               Maintenance* maintenance, JobStore* store,
                               Timer* timer, Clock* clock)
    : options_(options),
      coordinator_(coordinator),
      maintenance_(maintenance),
      store_(store),
      timer_(timer),
      clock_(clock) {}

absl::StatusOr<absl::Time> ScheduleRunner::NextRun(const Schedule& s,
                                                   absl::Time after,
                                                   absl::Duration min_every) {
  if (!s.every().empty()) {
    ASSIGN_OR_RETURN(absl::Duration every,
                     ParseDurationFlag("every", s.every()));
    if (every < min_every) {
      return absl::InvalidArgumentError(absl::StrCat(
          "every: ", Quote(s.every()), " is shorter than the minimum, ",
          absl::FormatDuration(min_every)));
    }
    return after + every;
  }
  ASSIGN_OR_RETURN(CronExpr cron, CronExpr::Parse(s.cron()));
  absl::Time next = cron.Next(after);
  if (next == absl::InfiniteFuture()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cron expression ", Quote(s.cron()), " never matches"));
  }
  return next;
}

absl::Status ScheduleRunner::Persist(const Schedule& s) {
  return store_->PutRecord(absl::StrCat(kSchedulePrefix, s.name()),
                           s.SerializeAsString());
}

absl::Status ScheduleRunner::Start() {
  std::map<std::string, Schedule> loaded;
  RETURN_IF_ERROR(store_->Scan(
      kSchedulePrefix, [&](absl::string_view key, absl::string_view value) {
        Schedule s;
        if (!s.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          return absl::DataLossError(
              absl::StrCat("schedule record ", key, " is corrupt"));
        }
        loaded[s.name()] = s;
        return absl::OkStatus();
      }));
  {
    absl::MutexLock l(&mu_);
    schedules_ = std::move(loaded);
    if (!schedules_.empty()) {
      spdlog::info("{} snapshot schedule(s) loaded", schedules_.size());
    }
  }
  ScheduleTick();
  return absl::OkStatus();
}

void ScheduleRunner::Shutdown() {
  absl::MutexLock l(&mu_);
  stopping_ = true;
}

void ScheduleRunner::ScheduleTick() {
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;
  }
  timer_->RunAfter(options_.poll, [this] {
    Tick();
    ScheduleTick();
  });
}

absl::StatusOr<Schedule> ScheduleRunner::Create(const Schedule& request) {
  Schedule s;
  s.set_name(request.name());
  s.set_every(request.every());
  s.set_cron(request.cron());
  s.set_label(request.label());
  *s.mutable_partition_ids() = request.partition_ids();
  s.set_allow_partial(request.allow_partial());
  *s.mutable_retention() = request.retention();
  s.set_paused(request.paused());
  s.set_job(request.job());
  s.set_deep(request.deep());
  RETURN_IF_ERROR(Validate(s, options_.min_every));
  const absl::Time now = clock_->Now();
  s.set_created_at_micros(absl::ToUnixMicros(now));
  ASSIGN_OR_RETURN(absl::Time next, NextRun(s, now, options_.min_every));
  s.set_next_run_at_micros(absl::ToUnixMicros(next));
  absl::MutexLock l(&mu_);
  if (schedules_.count(s.name()) > 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("schedule ", s.name(), " already exists"));
  }
  RETURN_IF_ERROR(Persist(s));
  schedules_[s.name()] = s;
  spdlog::info("schedule {} created ({}{})", s.name(),
               s.every().empty() ? "cron " : "every ",
               s.every().empty() ? s.cron() : s.every());
  return s;
}

std::vector<Schedule> ScheduleRunner::List() const {
  absl::MutexLock l(&mu_);
  std::vector<Schedule> out;
  for (const auto& [name, s] : schedules_) out.push_back(s);
  return out;
}

absl::StatusOr<Schedule> ScheduleRunner::SetPaused(const std::string& name,
                                                   bool paused) {
  RETURN_IF_ERROR(CheckSafeId("schedule name", name));
  absl::MutexLock l(&mu_);
  auto it = schedules_.find(name);
  if (it == schedules_.end()) {
    return absl::NotFoundError(absl::StrCat("no schedule ", name));
  }
  Schedule s = it->second;
  s.set_paused(paused);
  if (!paused) {
    // Resume from now: no burst of ticks missed while paused.
    ASSIGN_OR_RETURN(absl::Time next,
                     NextRun(s, clock_->Now(), options_.min_every));
    s.set_next_run_at_micros(absl::ToUnixMicros(next));
  }
  RETURN_IF_ERROR(Persist(s));
  it->second = s;
  return s;
}

absl::Status ScheduleRunner::Delete(const std::string& name) {
  RETURN_IF_ERROR(CheckSafeId("schedule name", name));
  absl::MutexLock l(&mu_);
  if (schedules_.count(name) == 0) {
    return absl::NotFoundError(absl::StrCat("no schedule ", name));
  }
  RETURN_IF_ERROR(store_->DeleteRecord(absl::StrCat(kSchedulePrefix, name)));
  schedules_.erase(name);
  spdlog::info("schedule {} deleted", name);
  return absl::OkStatus();
}

void ScheduleRunner::OnCommit(const std::string& snapshot_id) {
  Schedule s;
  {
    absl::MutexLock l(&mu_);
    auto it =
        std::find_if(schedules_.begin(), schedules_.end(), [&](const auto& kv) {
          return kv.second.last_snapshot_id() == snapshot_id;
        });
    if (it == schedules_.end()) return;
    it->second.set_last_success_at_micros(absl::ToUnixMicros(clock_->Now()));
    it->second.set_last_success_snapshot_id(snapshot_id);
    s = it->second;
    absl::Status p = Persist(s);
    if (!p.ok()) {
      spdlog::error("cannot record schedule {}: {}", s.name(), p.ToString());
    }
  }
  if (maintenance_ != nullptr && s.job() == shutter::v1::JOB_TYPE_SNAPSHOT) {
    maintenance_->RequestScheduleRetention(s.name(), s.retention());
  }
}

absl::StatusOr<std::string> ScheduleRunner::NewestCommittedSnapshot() const {
  for (const auto& summary : coordinator_->ListSnapshots(0)) {
    if (IsUsable(summary.state())) return summary.snapshot_id();
  }
  return absl::FailedPreconditionError("no committed snapshot to verify");
}

void ScheduleRunner::Tick() {
  absl::MutexLock t(&tick_mu_);
  const absl::Time now = clock_->Now();
  std::vector<Schedule> due;
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;
    for (const auto& [name, s] : schedules_) {
      if (!s.paused() && absl::FromUnixMicros(s.next_run_at_micros()) <= now) {
        due.push_back(s);
      }
    }
  }
  for (Schedule& s : due) {
    std::string skip;
    // One job per due time, whoever starts it: a leader that died between
    // starting the job and recording the tick leaves the tick due, and its
    // successor's run of it finds that job instead of starting a second.
    const std::string request_id =
        absl::StrCat("schedule/", s.name(), "/", s.next_run_at_micros());
    if (!s.last_snapshot_id().empty()) {
      shutter::v1::GetSnapshotRequest req;
      req.set_snapshot_id(s.last_snapshot_id());
      req.set_summary_only(true);
      auto prev = coordinator_->GetSnapshotPage(req);
      if (prev.ok() && !IsFinished(prev->snapshot().state())) {
        skip = absl::StrCat("previous run ", s.last_snapshot_id(), " is still ",
                            StateName(prev->snapshot().state()));
      }
    }
    if (skip.empty() && s.job() == shutter::v1::JOB_TYPE_VERIFY) {
      absl::StatusOr<std::string> id = NewestCommittedSnapshot();
      if (id.ok()) {
        shutter::v1::VerifySnapshotRequest req;
        req.set_snapshot_id(*id);
        req.set_deep(s.deep());
        req.set_request_id(request_id);
        id = StartVerify(*coordinator_, *coordinator_->repository(), req);
      }
      if (id.ok()) {
        s.set_runs(s.runs() + 1);
        s.set_last_run_at_micros(absl::ToUnixMicros(now));
        s.set_last_snapshot_id(*id);
        spdlog::info("schedule {}: started verify {}", s.name(), *id);
      } else {
        skip = absl::StrCat("the verify could not start: ",
                            StatusText(id.status()));
      }
    } else if (skip.empty()) {
      shutter::v1::CreateSnapshotRequest req;
      req.set_label(s.label());
      *req.mutable_partition_ids() = s.partition_ids();
      req.set_allow_partial(s.allow_partial());
      req.set_schedule(s.name());
      req.set_request_id(request_id);
      auto id = StartSnapshot(*coordinator_, req);
      if (id.ok()) {
        s.set_runs(s.runs() + 1);
        s.set_last_run_at_micros(absl::ToUnixMicros(now));
        s.set_last_snapshot_id(*id);
        spdlog::info("schedule {}: started snapshot {}", s.name(), *id);
      } else {
        skip = absl::StrCat("the snapshot could not start: ",
                            StatusText(id.status()));
      }
    }
    if (!skip.empty()) {
      s.set_skipped(s.skipped() + 1);
      s.set_last_skip_at_micros(absl::ToUnixMicros(now));
      s.set_last_skip_reason(skip);
      spdlog::warn("schedule {}: tick skipped: {}", s.name(), skip);
    }
    // Keep the cadence (next = previous due time + interval) unless the
    // controller was down past it: then from now.
    absl::Time base = absl::FromUnixMicros(s.next_run_at_micros());
    auto next = NextRun(s, base, options_.min_every);
    if (next.ok() && *next <= now) next = NextRun(s, now, options_.min_every);
    if (next.ok()) s.set_next_run_at_micros(absl::ToUnixMicros(*next));
    // Merge what OnCommit recorded meanwhile, then persist: both under
    // mu_, so the two writers' records cannot land out of order.
    absl::MutexLock l(&mu_);
    auto it = schedules_.find(s.name());
    if (it == schedules_.end()) continue;  // deleted meanwhile
    if (it->second.last_success_at_micros() > s.last_success_at_micros()) {
      s.set_last_success_at_micros(it->second.last_success_at_micros());
      s.set_last_success_snapshot_id(it->second.last_success_snapshot_id());
    }
    it->second = s;
    absl::Status p = Persist(s);
    if (!p.ok()) {
      spdlog::error("cannot record schedule {}: {}", s.name(), p.ToString());
    }
  }
}

}  // namespace shutter::controller
