#include "common/timer.h"

#include "absl/time/clock.h"
#include "common/thread_name.h"

namespace shutter {

ThreadTimer::ThreadTimer()
    : thread_([this] {
        NameThisThread("timer");
        Loop();
      }) {}

ThreadTimer::~ThreadTimer() { Shutdown(); }

void ThreadTimer::RunAfter(absl::Duration delay, Fn fn) {
  scheduler::LockGuard<scheduler::Mutex> l(mu_);
  if (stop_) return;
  pending_.emplace(std::make_pair(absl::Now() + delay, seq_++), std::move(fn));
  cv_.notify_all();
}

void ThreadTimer::Shutdown() {
  std::map<std::pair<absl::Time, uint64_t>, Fn> dropped;
  {
    scheduler::LockGuard<scheduler::Mutex> l(mu_);
    stop_ = true;
    dropped.swap(pending_);
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void ThreadTimer::Loop() {
  // Held except while a callback runs (and inside the waits, which
  // release it).
  mu_.lock();
  while (!stop_) {
    if (pending_.empty()) {
      cv_.wait(mu_);
      continue;
    }
    absl::Time due = pending_.begin()->first.first;
    absl::Time now = absl::Now();
    if (due > now) {
      cv_.wait_for(mu_, absl::ToChronoNanoseconds(due - now));
      continue;
    }
    Fn fn = std::move(pending_.begin()->second);
    pending_.erase(pending_.begin());
    mu_.unlock();
    std::move(fn)();
    mu_.lock();
  }
  mu_.unlock();
}

void ManualTimer::RunAfter(absl::Duration delay, Fn fn) {
  scheduler::LockGuard<scheduler::Mutex> l(mu_);
  if (stop_) return;
  pending_.emplace(std::make_pair(clock_->Now() + delay, seq_++),
                   std::move(fn));
}

void ManualTimer::Shutdown() {
  std::map<std::pair<absl::Time, uint64_t>, Fn> dropped;
  scheduler::LockGuard<scheduler::Mutex> l(mu_);
  stop_ = true;
  dropped.swap(pending_);
}

int ManualTimer::RunDue() {
  int ran = 0;
  for (;;) {
    Fn fn;
    {
      scheduler::LockGuard<scheduler::Mutex> l(mu_);
      if (pending_.empty() || pending_.begin()->first.first > clock_->Now()) {
        return ran;
      }
      fn = std::move(pending_.begin()->second);
      pending_.erase(pending_.begin());
    }
    std::move(fn)();
    ++ran;
  }
}

size_t ManualTimer::pending() {
  scheduler::LockGuard<scheduler::Mutex> l(mu_);
  return pending_.size();
}

}  // namespace shutter
