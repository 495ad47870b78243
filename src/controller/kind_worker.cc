#include "controller/kind_worker.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/thread_name.h"
#include "controller/job_engine.h"
#include "controller/job_states.h"

namespace shutter::controller {

KindWorker::KindWorker()
    : thread_([this] {
        NameThisThread("kind-worker");
        Loop();
      }) {}

KindWorker::~KindWorker() { Shutdown(); }

void KindWorker::Shutdown() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void KindWorker::Run(const std::string& job_id, Body body,
                     JobKind::TaskCallback done) {
  {
    absl::MutexLock l(&mu_);
    if (!stopping_) {
      queue_.push_back(Work{job_id, std::move(body), std::move(done)});
      return;
    }
  }
  std::move(done)(absl::UnavailableError("controller is shutting down"));
}

absl::Status KindWorker::LastError(const std::string& job_id) const {
  absl::MutexLock l(&mu_);
  auto it = errors_.find(job_id);
  return it == errors_.end() ? absl::OkStatus() : it->second;
}

void KindWorker::Loop() {
  for (;;) {
    Work w;
    std::deque<Work> left;  // never started, when stopping
    bool stop = false;
    {
      absl::MutexLock l(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) {
        left.swap(queue_);
        stop = true;
      } else {
        w = std::move(queue_.front());
        queue_.pop_front();
      }
    }
    if (stop) {
      for (Work& x : left) {
        std::move(x.done)(
            absl::UnavailableError("controller is shutting down"));
      }
      return;
    }
    absl::StatusOr<TaskOutcome> result = std::move(w.body)();
    {
      absl::MutexLock l(&mu_);
      if (result.ok()) {
        errors_.erase(w.job_id);
      } else {
        errors_[w.job_id] = result.status();
      }
    }
    std::move(w.done)(std::move(result));
  }
}

JobPlan ControllerJobPlan(shutter::v1::JobType type) {
  JobPlan plan;
  plan.record.set_type(type);
  plan.record.add_partitions()->set_partition_id(0);
  plan.placements.emplace_back(0, ControllerPlacement(KindName(type)));
  return plan;
}

absl::StatusOr<shutter::v1::Snapshot> AwaitControllerJob(
    JobEngine& engine, const std::string& job_id, absl::Duration timeout) {
  ASSIGN_OR_RETURN(shutter::v1::Snapshot h, engine.AwaitJob(job_id, timeout));
  if (h.state() == shutter::v1::SNAPSHOT_STATE_COMMITTED) return h;
  if (const auto* kind =
          dynamic_cast<const ControllerTaskKind*>(engine.KindOfJob(job_id))) {
    RETURN_IF_ERROR(kind->TaskError(job_id));
  }
  return absl::AbortedError(absl::StrCat(
      KindName(h.type()), " job ", job_id, " ended ", StateName(h.state()),
      h.error().empty() ? "" : ": ", h.error()));
}

}  // namespace shutter::controller
