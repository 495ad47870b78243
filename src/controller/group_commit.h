#ifndef SHUTTER_CONTROLLER_GROUP_COMMIT_H_
#define SHUTTER_CONTROLLER_GROUP_COMMIT_H_

#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "controller/job_store.h"

namespace shutter::controller {

// Group commit for the job store: records staged by any number of threads
// are written together, one durable write (in JobStore::MaxBatchRecords()
// chunks, in staging order) for everything staged while the previous
// write ran (lingering up to 2 ms for 512 records to gather), so a thousand
// concurrent task transitions cost one fsync, not a thousand. A later put of a
// key still waiting replaces the earlier one.
//
// Acting only on durable state: AfterDurable(fn) runs fn once everything
// staged before it has been written (OK), or with the error while the
// store fails, on the committer's thread, in registration order. Records
// whose write failed are kept and written again (every 100 ms) until it
// succeeds or the committer stops; callbacks see OK again only after a
// write succeeded. fn may stage more and register more callbacks; it must
// not call Flush().
//
// Thread-safe. `store` must outlive the committer.
class GroupCommitter {
 public:
  using Callback = absl::AnyInvocable<void(absl::Status) &&>;

  struct Stats {
    uint64_t groups = 0;         // durable writes (groups) done
    uint64_t records = 0;        // records written
    uint64_t bytes = 0;          // key + value bytes written
    uint64_t largest_group = 0;  // records
  };

  explicit GroupCommitter(JobStore* store);

  // Called after each durable write with its records and latency (for
  // metrics; on the committer's thread). Set before the first Put.
  void SetObserver(std::function<void(size_t records, double seconds)> fn) {
    observer_ = std::move(fn);
  }
  // Calls Shutdown().
  ~GroupCommitter();

  void Put(std::string key, std::string value) ABSL_LOCKS_EXCLUDED(mu_);
  void Delete(std::string key) ABSL_LOCKS_EXCLUDED(mu_);
  void AfterDurable(Callback fn) ABSL_LOCKS_EXCLUDED(mu_);

  // Waits until everything staged so far is written and every callback
  // registered so far has run; returns the first write error since the
  // last Flush (OK if none). Not from a callback.
  absl::Status Flush() ABSL_LOCKS_EXCLUDED(mu_);

  // Waits until nothing is staged, written or running (callbacks may stage
  // more: it waits for those too). For tests. Not from a callback.
  void WaitIdle() ABSL_LOCKS_EXCLUDED(mu_);

  // Writes what is staged, runs the callbacks, and stops the thread.
  // Later stages are dropped; later callbacks run at once with
  // UNAVAILABLE. Idempotent.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  Stats GetStats() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Record {
    std::string key;
    std::string value;
    bool is_delete = false;
  };
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);

  JobStore* const store_;
  std::function<void(size_t, double)> observer_;
  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;     // Shutdown() asked
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;  // the loop has exited
  bool busy_ ABSL_GUARDED_BY(mu_) = false;     // writing or running callbacks
  std::vector<Record> staged_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, size_t> staged_index_ ABSL_GUARDED_BY(mu_);
  std::vector<Callback> callbacks_ ABSL_GUARDED_BY(mu_);
  absl::Status first_error_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_GROUP_COMMIT_H_
