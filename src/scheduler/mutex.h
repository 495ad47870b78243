#ifndef SHUTTER_SCHEDULER_MUTEX_H_
#define SHUTTER_SCHEDULER_MUTEX_H_

#include <mutex>

#include "absl/base/thread_annotations.h"

namespace shutter::scheduler {

// std::mutex with Clang's thread-safety annotations (as leveldb's
// port::Mutex), so fields can be ABSL_GUARDED_BY it and the analysis
// checks every access. A pthread mutex rather than absl::Mutex on purpose:
// the distribution's Abseil is not built with ThreadSanitizer, which would
// not see absl::Mutex's synchronization (see scheduler.h).
class ABSL_LOCKABLE Mutex {
 public:
  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  // For std::condition_variable waits (the analysis does not follow them).
  std::mutex& native() { return mu_; }

 private:
  std::mutex mu_;
};

// Holds any annotated lockable (Mutex, SpinLock) for a scope; the analysis
// knows it is held from construction to destruction.
template <typename Lockable>
class ABSL_SCOPED_LOCKABLE LockGuard {
 public:
  explicit LockGuard(Lockable& mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_.lock();
  }
  ~LockGuard() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

 private:
  Lockable& mu_;
};

// Holds two lockables of one kind for a scope, taken in address order so
// that two threads locking the same pair cannot deadlock; `a` and `b` may
// be the same lock (then taken once).
template <typename Lockable>
class ABSL_SCOPED_LOCKABLE PairLock {
 public:
  PairLock(Lockable& a, Lockable& b) ABSL_EXCLUSIVE_LOCK_FUNCTION(a, b)
      : first_(&a < &b ? a : b), second_(&a < &b ? b : a) {
    first_.lock();
    if (&first_ != &second_) second_.lock();
  }
  ~PairLock() ABSL_UNLOCK_FUNCTION() {
    if (&first_ != &second_) second_.unlock();
    first_.unlock();
  }
  PairLock(const PairLock&) = delete;
  PairLock& operator=(const PairLock&) = delete;

 private:
  Lockable& first_;
  Lockable& second_;
};

}  // namespace shutter::scheduler

#endif  // SHUTTER_SCHEDULER_MUTEX_H_
