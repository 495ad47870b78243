#include "controller/group_commit.h"

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/thread_name.h"

namespace shutter::controller {

namespace {
// Group commit linger: wait up to this long for this many records.
constexpr absl::Duration kLinger = absl::Milliseconds(2);
constexpr size_t kLingerRecords = 512;
}  // namespace

GroupCommitter::GroupCommitter(JobStore* store) : store_(store) {
  thread_ = std::thread([this] {
    NameThisThread("job-commit");
    Loop();
  });
}

GroupCommitter::~GroupCommitter() { Shutdown(); }

void GroupCommitter::Put(std::string key, std::string value) {
  absl::MutexLock l(&mu_);
  if (stopped_) return;
  auto [it, inserted] = staged_index_.try_emplace(key, staged_.size());
  if (!inserted) {
    staged_[it->second].value = std::move(value);
    staged_[it->second].is_delete = false;
    return;
  }
  staged_.push_back({std::move(key), std::move(value), false});
}

void GroupCommitter::Delete(std::string key) {
  absl::MutexLock l(&mu_);
  if (stopped_) return;
  auto [it, inserted] = staged_index_.try_emplace(key, staged_.size());
  if (!inserted) {
    staged_[it->second].value.clear();
    staged_[it->second].is_delete = true;
    return;
  }
  staged_.push_back({std::move(key), "", true});
}

void GroupCommitter::AfterDurable(Callback fn) {
  {
    absl::MutexLock l(&mu_);
    if (!stopped_) {
      callbacks_.push_back(std::move(fn));
      return;
    }
  }
  std::move(fn)(absl::UnavailableError("job store committer stopped"));
}

void GroupCommitter::Loop() {
  absl::Status failing;  // the last write error, until a write succeeds
  for (;;) {
    std::vector<Record> records;
    std::vector<Callback> callbacks;
    {
      absl::MutexLock l(&mu_);
      if (!failing.ok()) {
        // Do not spin on a failing store.
        mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Milliseconds(100));
      }
      auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || !staged_.empty() || !callbacks_.empty();
      };
      mu_.Await(absl::Condition(&work));
      if (!stop_ && staged_.size() < kLingerRecords) {
        // Linger a moment so that records arriving one by one (answers
        // trickling in) share a write: a few ms of latency for far fewer
        // fsyncs.
        auto full = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stop_ || staged_.size() >= kLingerRecords;
        };
        mu_.AwaitWithTimeout(absl::Condition(&full), kLinger);
      }
      if (staged_.empty() && callbacks_.empty()) {  // and stop_
        stopped_ = true;
        return;
      }
      if (stop_ && !failing.ok()) {
        // Stopping with a failing store: give up on what is staged.
        staged_.clear();
        staged_index_.clear();
      }
      records.swap(staged_);
      staged_index_.clear();
      callbacks.swap(callbacks_);
      busy_ = true;
    }
    absl::Status status;
    uint64_t bytes = 0;
    size_t written = 0;  // records in the chunks that succeeded
    const size_t max_batch = store_->MaxBatchRecords();
    for (size_t i = 0; i < records.size() && status.ok(); i += max_batch) {
      JobStoreBatch batch;
      const size_t end = std::min(records.size(), i + max_batch);
      for (size_t j = i; j < end; ++j) {
        const Record& r = records[j];
        bytes += r.key.size() + r.value.size();
        if (r.is_delete) {
          batch.deletes.push_back(r.key);
        } else {
          batch.puts.emplace_back(r.key, r.value);
        }
      }
      const absl::Time start = absl::Now();
      status = store_->Write(batch);
      if (status.ok()) written = end;
      if (status.ok() && observer_) {
        observer_(end - i, absl::ToDoubleSeconds(absl::Now() - start));
      }
    }
    if (!records.empty()) failing = status;
    {
      absl::MutexLock l(&mu_);
      if (written > 0) {
        ++stats_.groups;
        stats_.records += written;
        stats_.bytes += bytes;
        stats_.largest_group =
            std::max<uint64_t>(stats_.largest_group, written);
      }
      if (!status.ok()) {
        if (first_error_.ok()) first_error_ = status;
        // Not durable: stage again, ahead of (and superseded by) what was
        // staged since, and retry.
        std::vector<Record> again;
        for (size_t j = written; j < records.size(); ++j) {
          if (staged_index_.count(records[j].key) == 0) {
            again.push_back(std::move(records[j]));
          }
        }
        for (auto& r : staged_) again.push_back(std::move(r));
        staged_ = std::move(again);
        staged_index_.clear();
        for (size_t j = 0; j < staged_.size(); ++j) {
          staged_index_[staged_[j].key] = j;
        }
      }
    }
    // While the store fails, nothing staged before these callbacks can be
    // trusted durable: they all see the error.
    for (auto& cb : callbacks) std::move(cb)(failing);
    {
      absl::MutexLock l(&mu_);
      busy_ = false;
    }
  }
}

absl::Status GroupCommitter::Flush() {
  absl::Notification done;
  AfterDurable([&done](absl::Status) { done.Notify(); });
  done.WaitForNotification();
  absl::MutexLock l(&mu_);
  absl::Status s = first_error_;
  first_error_ = absl::OkStatus();
  return s;
}

void GroupCommitter::WaitIdle() {
  absl::MutexLock l(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !busy_ && staged_.empty() && callbacks_.empty();
  };
  mu_.Await(absl::Condition(&idle));
}

void GroupCommitter::Shutdown() {
  {
    absl::MutexLock l(&mu_);
    if (stop_) return;
    stop_ = true;
  }
  // The loop drains what is staged (and what callbacks stage) first.
  if (thread_.joinable()) thread_.join();
}

GroupCommitter::Stats GroupCommitter::GetStats() const {
  absl::MutexLock l(&mu_);
  return stats_;
}

}  // namespace shutter::controller
