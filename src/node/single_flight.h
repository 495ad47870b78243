#ifndef SHUTTER_NODE_SINGLE_FLIGHT_H_
#define SHUTTER_NODE_SINGLE_FLIGHT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/error_reason.h"
#include "scheduler/scheduler.h"

namespace shutter::node {

// One run per key at a time on a Scheduler, for the node's idempotent
// requests (a checkpoint of (snapshot, partition), a restore of (restore,
// partition)): a request for a key whose run is in progress joins it and
// gets the same result. Every request is answered exactly once: with its
// run's result, or UNAVAILABLE (NODE_UNAVAILABLE) if the scheduler drops
// the run unrun at shutdown. Thread-safe; must outlive the scheduler's
// tasks (shut the scheduler down first).
template <typename Result>
class SingleFlight {
 public:
  using Key = std::pair<std::string, uint32_t>;
  using Callback = absl::AnyInvocable<void(absl::StatusOr<Result>) &&>;
  using Body = absl::AnyInvocable<absl::StatusOr<Result>() &&>;

  struct Hooks {
    // Called once per request, as it is admitted: joined or not.
    std::function<void(bool joined)> admitted;
    // Called once per run with its result, before anyone is answered.
    std::function<void(const absl::StatusOr<Result>&)> finished;
  };

  explicit SingleFlight(Hooks hooks) : hooks_(std::move(hooks)) {}

  // Queues `body` on `scheduler` under `dispatch_key` unless a run of `key`
  // is in progress; either way `done` gets that run's result. True if a new
  // run was queued.
  bool Run(scheduler::Scheduler& scheduler, const std::string& dispatch_key,
           const Key& key, Callback done, Body body) ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock l(&mu_);
      auto [it, inserted] = waiting_.try_emplace(key);
      it->second.push_back(std::move(done));
      if (hooks_.admitted) hooks_.admitted(!inserted);
      if (!inserted) return false;
    }
    // Settles the run exactly once: after the body, or from the destructor
    // if the scheduler drops the task unrun.
    struct Guard {
      SingleFlight* self;
      Key key;
      bool finished = false;
      ~Guard() {
        if (finished) return;
        self->Finish(key,
                     WithReason(absl::UnavailableError("node is shutting down"),
                                ErrorReason::kNodeUnavailable));
      }
    };
    // (Constructed in place: a temporary Guard would settle on destruction.)
    std::unique_ptr<Guard> guard(new Guard{this, key});
    scheduler.Submit({dispatch_key, /*job=*/0, /*weight=*/0, nullptr},
                     [this, guard = std::move(guard), body = std::move(body)](
                         scheduler::SlotToken token) mutable {
                       absl::StatusOr<Result> r = std::move(body)();
                       guard->finished = true;
                       token.Release();
                       Finish(guard->key, r);
                     });
    return true;
  }

 private:
  void Finish(const Key& key, const absl::StatusOr<Result>& result)
      ABSL_LOCKS_EXCLUDED(mu_) {
    std::vector<Callback> waiters;
    {
      absl::MutexLock l(&mu_);
      auto it = waiting_.find(key);
      if (it != waiting_.end()) {
        waiters = std::move(it->second);
        waiting_.erase(it);
      }
    }
    if (hooks_.finished) hooks_.finished(result);
    for (auto& cb : waiters) std::move(cb)(result);
  }

  const Hooks hooks_;
  absl::Mutex mu_;
  // Runs in progress, with every request waiting for each.
  std::map<Key, std::vector<Callback>> waiting_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shutter::node

#endif  // SHUTTER_NODE_SINGLE_FLIGHT_H_
