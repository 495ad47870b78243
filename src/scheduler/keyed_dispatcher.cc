#include "scheduler/keyed_dispatcher.h"

#include <algorithm>
#include <utility>

namespace shutter::scheduler {

SlotToken::SlotToken(SlotToken&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)),
      key_(std::move(other.key_)) {}

SlotToken& SlotToken::operator=(SlotToken&& other) noexcept {
  if (this != &other) {
    Release();
    owner_ = std::exchange(other.owner_, nullptr);
    key_ = std::move(other.key_);
  }
  return *this;
}

void SlotToken::Release() {
  if (owner_ == nullptr) return;
  KeyedDispatcher* owner = std::exchange(owner_, nullptr);
  owner->ReleaseSlot(key_);
}

KeyedDispatcher::KeyedDispatcher(const Options& options) : options_(options) {
  int n = std::max(1, options_.num_threads);
  threads_.reserve(n);
  for (int i = 0; i < n; ++i) threads_.emplace_back([this] { WorkerLoop(); });
}

KeyedDispatcher::~KeyedDispatcher() { Shutdown(); }

int KeyedDispatcher::LimitLocked(const KeyState& ks) const {
  return ks.limit < 0 ? options_.default_limit : ks.limit;
}

void KeyedDispatcher::SetLimit(absl::string_view key, int limit) {
  absl::MutexLock l(&mu_);
  auto& ks = keys_[key];
  ks.limit = std::max(0, limit);
  PumpLocked(std::string(key), ks);
}

bool KeyedDispatcher::Submit(absl::string_view key, int64_t weight, Task task) {
  absl::MutexLock l(&mu_);
  if (shutdown_) return false;
  auto& ks = keys_[key];
  ks.pending.push_back(Pending{weight, next_seq_++, std::move(task)});
  std::push_heap(ks.pending.begin(), ks.pending.end(), PendingOrder());
  PumpLocked(std::string(key), ks);
  return true;
}

void KeyedDispatcher::PumpLocked(const std::string& key, KeyState& ks) {
  while (!ks.pending.empty() && ks.in_flight < LimitLocked(ks) &&
         (options_.global_limit <= 0 ||
          total_in_flight_ < options_.global_limit)) {
    std::pop_heap(ks.pending.begin(), ks.pending.end(), PendingOrder());
    Pending p = std::move(ks.pending.back());
    ks.pending.pop_back();
    ++ks.in_flight;
    ks.peak_in_flight = std::max(ks.peak_in_flight, ks.in_flight);
    ++total_in_flight_;
    ready_.push_back(Ready{key, std::move(p.task)});
  }
}

void KeyedDispatcher::PumpAllLocked() {
  for (auto& [key, ks] : keys_) {
    if (!ks.pending.empty()) PumpLocked(key, ks);
  }
}

void KeyedDispatcher::ReleaseSlot(const std::string& key) {
  absl::MutexLock l(&mu_);
  auto it = keys_.find(key);
  if (it == keys_.end()) return;  // cannot happen: keys are never erased
  KeyState& ks = it->second;
  --ks.in_flight;
  --total_in_flight_;
  ++ks.completed;
  if (shutdown_) return;
  if (options_.global_limit > 0) {
    PumpAllLocked();
  } else {
    PumpLocked(key, ks);
  }
}

void KeyedDispatcher::WorkerLoop() {
  for (;;) {
    Ready r;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(
          +[](KeyedDispatcher* d) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return d->shutdown_ || !d->ready_.empty();
          },
          this));
      if (ready_.empty()) return;  // shutdown_ and nothing left to hand out
      r = std::move(ready_.front());
      ready_.pop_front();
    }
    std::move(r.task)(SlotToken(this, std::move(r.key)));
  }
}

void KeyedDispatcher::Shutdown() {
  std::vector<Pending> dropped;
  std::deque<Ready> dropped_ready;
  {
    absl::MutexLock l(&mu_);
    if (shutdown_ && threads_.empty()) return;
    shutdown_ = true;
    for (auto& [key, ks] : keys_) {
      for (auto& p : ks.pending) dropped.push_back(std::move(p));
      ks.pending.clear();
    }
    // Tasks made ready but not yet started are dropped too; their slots are
    // given back here since no token was created for them.
    for (auto& r : ready_) {
      auto& ks = keys_[r.key];
      --ks.in_flight;
      --total_in_flight_;
    }
    dropped_ready.swap(ready_);
  }
  // Destroy dropped tasks outside the lock: their destructors may release
  // tokens they captured.
  dropped.clear();
  dropped_ready.clear();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

KeyedDispatcher::KeyStats KeyedDispatcher::GetKeyStats(
    absl::string_view key) const {
  absl::MutexLock l(&mu_);
  KeyStats s;
  auto it = keys_.find(key);
  if (it == keys_.end()) {
    s.limit = options_.default_limit;
    return s;
  }
  const KeyState& ks = it->second;
  s.limit = LimitLocked(ks);
  s.queued = static_cast<int>(ks.pending.size());
  s.in_flight = ks.in_flight;
  s.peak_in_flight = ks.peak_in_flight;
  s.completed = ks.completed;
  return s;
}

std::map<std::string, KeyedDispatcher::KeyStats> KeyedDispatcher::GetAllStats()
    const {
  std::map<std::string, KeyStats> out;
  absl::MutexLock l(&mu_);
  for (const auto& [key, ks] : keys_) {
    KeyStats s;
    s.limit = LimitLocked(ks);
    s.queued = static_cast<int>(ks.pending.size());
    s.in_flight = ks.in_flight;
    s.peak_in_flight = ks.peak_in_flight;
    s.completed = ks.completed;
    out[key] = s;
  }
  return out;
}

}  // namespace shutter::scheduler
