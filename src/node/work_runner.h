#ifndef SHUTTER_NODE_WORK_RUNNER_H_
#define SHUTTER_NODE_WORK_RUNNER_H_

#include <algorithm>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <set>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/error_reason.h"
#include "common/ids.h"
#include "common/io_priority.h"
#include "node/node_instance.h"
#include "node/single_flight.h"
#include "scheduler/scheduler.h"
#include "spdlog/spdlog.h"

namespace shutter::node {

// What a node's partition work shares, whatever the work (restores and
// verifies; checkpoints are meant to move onto it): a bounded pool
// (`capacity` runs at once, further requests wait in order), one run per
// (job, partition) at a time with repeats joining it (SingleFlight), the
// jobs cancelled by the controller, the threads' I/O class and CPU nice
// value, and counts of runs in flight, succeeded and failed.
//
// Thread-safe. Shutdown() (or the destructor) answers queued requests
// with UNAVAILABLE (NODE_UNAVAILABLE) and waits for running ones.
template <typename Response>
class WorkRunner {
 public:
  struct Options {
    // What the work is, for messages ("verify").
    std::string what = "work";
    // What its jobs are called in a cancellation ("<job_noun> <id> was
    // cancelled"); empty: `what`.
    std::string job_noun;
    int capacity = 2;
    IoClass io_class = IoClass::kBestEffortLow;
    int nice = 0;
    // Called once per run with its result, before anyone is answered (the
    // owner's own statistics).
    std::function<void(const absl::StatusOr<Response>&)> finished;
  };
  struct Stats {
    // Requests being handled: waiting for a worker or running.
    uint32_t in_flight = 0;
    uint32_t peak_in_flight = 0;
    // Of those, running now (at most `capacity`), and the most at once.
    uint32_t running = 0;
    uint32_t peak_running = 0;
    uint64_t succeeded = 0;
    uint64_t failed = 0;
    // Requests that joined a run already in progress.
    uint64_t joined = 0;
    // How many run at once now (SetLimit; the capacity until set).
    uint32_t limit = 0;
  };
  using Callback = typename SingleFlight<Response>::Callback;
  using Body = absl::AnyInvocable<absl::StatusOr<Response>() &&>;

  explicit WorkRunner(Options options)
      : options_(std::move(options)),
        flights_({[this](bool joined) {
                    absl::MutexLock l(&mu_);
                    if (joined) {
                      ++stats_.joined;
                      return;
                    }
                    ++stats_.in_flight;
                    stats_.peak_in_flight =
                        std::max(stats_.peak_in_flight, stats_.in_flight);
                  },
                  [this](const absl::StatusOr<Response>& r) {
                    {
                      absl::MutexLock l(&mu_);
                      --stats_.in_flight;
                      ++(r.ok() ? stats_.succeeded : stats_.failed);
                    }
                    if (options_.finished) options_.finished(r);
                  }}),
        scheduler_([&] {
          scheduler::Scheduler::Options o;
          o.num_workers = std::max(1, options_.capacity);
          o.default_limit = std::max(1, options_.capacity);
          o.thread_name = options_.what;
          return o;
        }()) {}
  ~WorkRunner() { Shutdown(); }

  // Runs `body` for (job_id, partition) unless a run of it is in progress
  // (then `done` gets that run's result). `done` is called exactly once.
  void Run(const std::string& job_id, uint32_t partition, Callback done,
           Body body) {
    flights_.Run(scheduler_, options_.what, {job_id, partition},
                 std::move(done), [this, body = std::move(body)]() mutable {
                   {
                     absl::MutexLock l(&mu_);
                     ++stats_.running;
                     stats_.peak_running =
                         std::max(stats_.peak_running, stats_.running);
                   }
                   SetThreadIoClass(options_.io_class);
                   SetThreadNice(options_.nice);
                   absl::StatusOr<Response> r = std::move(body)();
                   absl::MutexLock l(&mu_);
                   --stats_.running;
                   return r;
                 });
  }

  // Runs of `job_id` see CheckNotCancelled fail from now on; idempotent.
  void Cancel(const std::string& job_id) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    if (cancelled_.insert(job_id).second) {
      spdlog::info("{}s of {} cancelled", options_.what, job_id);
    }
  }
  // CANCELLED (reason CANCELLED) once `job_id` was cancelled.
  absl::Status CheckNotCancelled(const std::string& job_id) const
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    if (cancelled_.count(job_id) == 0) return absl::OkStatus();
    return WithReason(
        absl::CancelledError(absl::StrCat(
            options_.job_noun.empty() ? options_.what : options_.job_noun, " ",
            job_id, " was cancelled")),
        ErrorReason::kCancelled);
  }

  Stats GetStats() const ABSL_LOCKS_EXCLUDED(mu_) {
    const int limit = scheduler_.GetKeyStats(options_.what).limit;
    absl::MutexLock l(&mu_);
    Stats s = stats_;
    s.limit = static_cast<uint32_t>(limit);
    return s;
  }

  // Runs at most `limit` at once from now on (clamped to 1..capacity):
  // requests beyond it wait, running ones finish.
  void SetLimit(int limit) {
    scheduler_.SetLimit(options_.what,
                        std::clamp(limit, 1, std::max(1, options_.capacity)));
  }

  void Shutdown() { scheduler_.Shutdown(); }

 private:
  const Options options_;
  mutable absl::Mutex mu_;
  std::set<std::string> cancelled_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
  // Declared before the scheduler: dropped runs still answer through it.
  SingleFlight<Response> flights_;
  scheduler::Scheduler scheduler_;
};

// The checks every controller request for partition work passes before it
// is queued: its ids are safe path components (INVALID_REQUEST), the node
// serves (`check_serving`, if set), and the request is meant for this
// incarnation (empty `expected_instance` = any).
inline absl::Status AdmitPartitionWork(
    std::initializer_list<std::pair<const char*, const std::string*>> ids,
    const std::function<absl::Status()>& check_serving,
    const std::string& expected_instance, const std::string& instance_id,
    const std::string& node_id) {
  for (const auto& [name, id] : ids) {
    if (absl::Status s = CheckSafeId(name, *id); !s.ok()) {
      return WithReason(s, ErrorReason::kInvalidRequest);
    }
  }
  if (check_serving) {
    if (absl::Status s = check_serving(); !s.ok()) return s;
  }
  return CheckIncarnation(expected_instance, instance_id, node_id);
}

// Calls `start` with a callback and waits for it: the synchronous form of
// an asynchronous runner call (tests, tools).
template <typename Response, typename Start>
absl::StatusOr<Response> AwaitResult(Start start) {
  absl::Notification done;
  absl::StatusOr<Response> out;
  start([&](absl::StatusOr<Response> r) {
    out = std::move(r);
    done.Notify();
  });
  done.WaitForNotification();
  return out;
}

}  // namespace shutter::node

#endif  // SHUTTER_NODE_WORK_RUNNER_H_
