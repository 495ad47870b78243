#ifndef SHUTTER_PARTITION_WRITE_STALL_LISTENER_H_
#define SHUTTER_PARTITION_WRITE_STALL_LISTENER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "partition/partition_store.h"
#include "rocksdb/listener.h"

namespace shutter::partition {

// Feeds one store's stall transitions into `stats`; `now` is the clock.
class WriteStallListener : public rocksdb::EventListener {
 public:
  WriteStallListener(WriteStallStats* stats, std::function<absl::Time()> now)
      : stats_(stats), now_(std::move(now)) {}

  void OnStallConditionsChanged(const rocksdb::WriteStallInfo& info) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    using C = rocksdb::WriteStallCondition;
    const bool was = info.condition.prev != C::kNormal;
    const bool is = info.condition.cur != C::kNormal;
    if (was == is) return;
    absl::MutexLock l(&mu_);
    const absl::Time now = now_();
    if (is) {
      stats_->stalls.fetch_add(1, std::memory_order_relaxed);
      since_[info.cf_name] = now;
      return;
    }
    auto it = since_.find(info.cf_name);
    if (it == since_.end()) return;
    stats_->stalled_micros.fetch_add(
        static_cast<uint64_t>(absl::ToInt64Microseconds(now - it->second)),
        std::memory_order_relaxed);
    since_.erase(it);
  }

 private:
  WriteStallStats* const stats_;
  const std::function<absl::Time()> now_;
  absl::Mutex mu_;
  // Column family -> when its current stall began.
  std::map<std::string, absl::Time> since_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shutter::partition

#endif  // SHUTTER_PARTITION_WRITE_STALL_LISTENER_H_
