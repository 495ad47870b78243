#ifndef SHUTTER_SCHEDULER_SPIN_LOCK_H_
#define SHUTTER_SCHEDULER_SPIN_LOCK_H_

#include <atomic>
#include <thread>

#include "absl/base/thread_annotations.h"

namespace shutter::scheduler {

// A test-and-test-and-set lock for the scheduler's tiny critical sections
// (a few pointer moves): cheaper than a futex-based mutex under the short
// contention they see. After a short spin it yields the CPU, so a holder
// that was preempted still gets to run. Built on std::atomic, so
// ThreadSanitizer sees its synchronization. Satisfies Lockable (works with
// std::lock_guard, std::unique_lock and std::lock) and carries Clang's
// thread-safety annotations (fields can be ABSL_GUARDED_BY it; hold it
// with LockGuard from mutex.h so the analysis sees the scope).
class ABSL_LOCKABLE SpinLock {
 public:
  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    for (int spins = 0;; ++spins) {
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
      while (locked_.load(std::memory_order_relaxed)) {
        if (++spins > 64) {
          std::this_thread::yield();
        } else {
#if defined(__x86_64__) || defined(__i386__)
          __builtin_ia32_pause();
#endif
        }
      }
    }
  }
  bool try_lock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) {
    return !locked_.load(std::memory_order_relaxed) &&
           !locked_.exchange(true, std::memory_order_acquire);
  }
  void unlock() ABSL_UNLOCK_FUNCTION() {
    locked_.store(false, std::memory_order_release);
  }

 private:
  std::atomic<bool> locked_{false};
};

}  // namespace shutter::scheduler

#endif  // SHUTTER_SCHEDULER_SPIN_LOCK_H_
