#ifndef SHUTTER_COMMON_TIMER_H_
#define SHUTTER_COMMON_TIMER_H_

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "scheduler/mutex.h"

namespace shutter {

// Runs callbacks after a delay (retry backoff, waiting for a leader).
// Locks are scheduler::Mutex (annotated pthread mutexes, see
// scheduler/mutex.h), so ThreadSanitizer and the thread-safety analysis
// both see them.
// Injected so tests fire timers by hand. Implementations are thread-safe;
// callbacks run on the timer's own thread (or the test's), never inline in
// RunAfter().
class Timer {
 public:
  using Fn = absl::AnyInvocable<void() &&>;
  virtual ~Timer() = default;
  // Schedules `fn` to run `delay` from now. After Shutdown(), drops it.
  virtual void RunAfter(absl::Duration delay, Fn fn) = 0;
  // Drops pending callbacks (destroying them unrun) and stops. Waits for a
  // callback that is running. Idempotent.
  virtual void Shutdown() = 0;
};

// A Timer with one thread, waiting on the real clock.
class ThreadTimer : public Timer {
 public:
  ThreadTimer();
  ~ThreadTimer() override;
  void RunAfter(absl::Duration delay, Fn fn) override;
  void Shutdown() override;

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);
  scheduler::Mutex mu_;
  std::condition_variable_any cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  // By due time.
  std::map<std::pair<absl::Time, uint64_t>, Fn> pending_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// A Timer for tests: callbacks run only when the test calls RunDue(), with
// the time of the FakeClock it was given.
class ManualTimer : public Timer {
 public:
  explicit ManualTimer(Clock* clock) : clock_(clock) {}
  void RunAfter(absl::Duration delay, Fn fn) override;
  void Shutdown() override;
  // Runs every callback due at clock->Now() (including ones they schedule
  // that are already due). Returns how many ran.
  int RunDue();
  size_t pending();

 private:
  Clock* const clock_;
  scheduler::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::pair<absl::Time, uint64_t>, Fn> pending_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shutter

#endif  // SHUTTER_COMMON_TIMER_H_
