#ifndef SHUTTER_COMMON_TIMER_H_
#define SHUTTER_COMMON_TIMER_H_

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace shutter {

// Runs callbacks after a delay (retry backoff, waiting for a leader).
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
  void Loop();
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  uint64_t seq_ = 0;
  std::map<std::pair<absl::Time, uint64_t>, Fn> pending_;  // by due time
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
  std::mutex mu_;
  bool stop_ = false;
  uint64_t seq_ = 0;
  std::map<std::pair<absl::Time, uint64_t>, Fn> pending_;
};

}  // namespace shutter

#endif  // SHUTTER_COMMON_TIMER_H_
