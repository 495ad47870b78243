#ifndef SHUTTER_SCHEDULER_SCHEDULER_H_
#define SHUTTER_SCHEDULER_SCHEDULER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "scheduler/mutex.h"

namespace shutter::scheduler {

class Scheduler;
struct Task;

// A held concurrency slot of one key (node). Move-only. The slot is given
// back exactly once: when the token is destroyed or Release()d, whichever
// comes first, so no path (success, error, a dropped callback) can leak it.
class SlotToken {
 public:
  SlotToken();
  SlotToken(SlotToken&& other) noexcept;
  SlotToken& operator=(SlotToken&& other) noexcept;
  SlotToken(const SlotToken&) = delete;
  SlotToken& operator=(const SlotToken&) = delete;
  ~SlotToken();

  // Gives the slot back now. Idempotent.
  void Release();
  // Release(), and if the freed slot admits a task, runs that task's body
  // on the calling thread before returning (any other task admitted goes
  // to the workers, as with Release): one hand-off to a worker less, for a
  // caller on a thread of its own that is done with the slot, e.g. an RPC
  // callback whose answer frees the node for its next task. Within a task
  // body (on a worker, or in a body this runs) it is Release(): bodies
  // never nest. Idempotent.
  void ReleaseAndRun();
  bool held() const { return task_ != nullptr; }
  // The key, job and id of the task holding the slot (empty/0 if !held()).
  const std::string& key() const;
  uint64_t job() const;
  uint64_t task_id() const;

 private:
  friend class Scheduler;
  SlotToken(Scheduler* owner, std::unique_ptr<Task> task);
  Scheduler* owner_ = nullptr;
  std::unique_ptr<Task> task_;
};

// What a task is, apart from its body.
struct TaskOptions {
  // Concurrency key: the node the task runs against.
  std::string key;
  // The job (cluster snapshot) it belongs to; jobs share a key's slots
  // round-robin. Job ids must not be reused after CancelJob().
  uint64_t job = 0;
  // Estimated size; within a key and job, larger tasks start first.
  int64_t weight = 0;
  // Called at most once, on any thread, if the task's job is cancelled or
  // the scheduler shuts down before the task completes: with false if the
  // task had not started (its body will never run), with true if it is in
  // flight (it should wind down and release its token). May run
  // concurrently with the body or just after it completed.
  std::function<void(bool running)> on_cancel;
  // The key itself holds work sent to it beyond its limit, in order, and
  // starts it only as its own slots free (a node queues checkpoint
  // requests above its capacity). Such a task may be admitted past the
  // key's limit, by up to the key's `ahead` (SetLimit), while every task
  // in flight on the key is such a task: the key then has its next task at
  // hand when a slot frees, instead of waiting for the completion to reach
  // the scheduler and the next task to come back. Tasks without it never
  // start past the limit, and none is admitted ahead while one of them is
  // in flight.
  bool waits_at_key = false;
};

// The body receives the slot token and keeps the slot until it releases
// or destroys the token (possibly later, on another thread).
using TaskFn = absl::AnyInvocable<void(SlotToken) &&>;

// A work-stealing task scheduler with per-key concurrency limits.
//
// Admission: every key (node id) has a limit; a task is admitted (takes a
// slot) only while its key has fewer tasks in flight than its limit, and
// the global in-flight count is under the optional global limit. A key
// may also take up to `ahead` more tasks that wait at the key
// (TaskOptions::waits_at_key), admitted only after its limit is full. Admission
// happens the moment a slot frees or a task arrives, under the key's shard
// lock, so the scheduler is work-conserving: no key ever has a free slot
// and an admissible queued task at the same time. A full key never delays
// other keys. Within a key, jobs with queued tasks take turns
// (round-robin); within a job, the largest weight goes first (LPT), ties
// in submission order.
//
// Execution: admitted tasks go onto per-worker deques (the submitting
// worker's own deque when a task body submits or releases, otherwise round
// robin); a worker runs its own deque first (FIFO) and steals from the
// back of another's when empty. Keys are spread over 64 shards, each with
// its own mutex, so submissions for different nodes rarely meet on a lock.
//
// Locks: per shard and per worker a SpinLock (critical sections of a few
// pointer moves), global_mu_ for the global cap, idle_mu_ only for the
// idle workers' condition variable. They are pthread mutexes and atomics
// rather than absl::Mutex on purpose: the distribution's Abseil is not
// built with ThreadSanitizer, which would then not see absl::Mutex's
// synchronization. All carry Clang's thread-safety annotations (mutex.h,
// spin_lock.h): every guarded field is checked in CI. Abseil's deadlock
// detection is off in the daemons (daemon::BlockShutdownSignals) because
// its cost grows with the number of mutexes, and the scheduler is built
// on this fixed lock order instead.
//
// Thread-safe. The scheduler must outlive every SlotToken it hands out.
class Scheduler {
 public:
  struct Options {
    // Worker threads running task bodies. Bodies should be short (start an
    // RPC, return); a body that blocks holds a worker.
    int num_workers = 2;
    // Limit for keys never given one with SetLimit().
    int default_limit = 1;
    // Cap on tasks in flight over all keys; 0 = none.
    int global_limit = 0;
    // Clock for queue-time statistics; null = absl::Now.
    std::function<absl::Time()> now;
    // Worker threads are named "<thread_name>-<i>", cut to the 15
    // characters Linux keeps (what top -H, perf and /proc show).
    std::string thread_name = "scheduler";
  };

  struct KeyStats {
    int limit = 0;
    // Tasks that may be admitted past the limit (SetLimit).
    int ahead = 0;
    int queued = 0;
    // Admitted and not completed, those admitted ahead included (so up to
    // limit + ahead).
    int in_flight = 0;
    int peak_in_flight = 0;
    uint64_t completed = 0;
    // Sum over admitted tasks of the time from submission (or re-key) to
    // admission.
    absl::Duration total_queued_time;
  };

  struct Stats {
    uint64_t submitted = 0;
    uint64_t executed = 0;  // bodies run
    uint64_t dropped = 0;   // never ran: cancelled or shut down
    uint64_t steals = 0;    // tasks a worker took from another's deque
    uint64_t run_here = 0;  // bodies ReleaseAndRun ran on its caller's thread
    std::map<std::string, KeyStats> keys;
  };

  explicit Scheduler(Options options);
  // Calls Shutdown().
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a task and returns its id (> 0). After Shutdown(), or when its
  // job was cancelled, the task is dropped at once (on_cancel(false)) and
  // 0 is returned.
  uint64_t Submit(TaskOptions options, TaskFn fn);

  // Submits many tasks at once: all are queued before any is admitted, so
  // the per-key order (round-robin over jobs, largest first) holds from the
  // very first admission, not only for tasks that had to wait. Returns the
  // ids in order (0 for a dropped task, as Submit does).
  std::vector<uint64_t> SubmitBatch(
      std::vector<std::pair<TaskOptions, TaskFn>> tasks);

  // Sets a key's limit (>= 0; 0 drains the key: nothing new starts) and
  // how many tasks that wait at the key it may take beyond the limit
  // (`ahead` >= 0; none while the limit is 0). Takes effect at once:
  // raising admits queued tasks; lowering lets in-flight tasks finish but
  // admits nothing until the key is under the new bound.
  void SetLimit(absl::string_view key, int limit, int ahead = 0);

  // Moves a queued task from `from_key` to `to_key` (its partition's leader
  // moved), keeping its job, weight and submission order. NOT_FOUND if the
  // task is not queued under `from_key` (already started, unknown,
  // cancelled).
  absl::Status Rekey(uint64_t task_id, const std::string& from_key,
                     const std::string& to_key);

  // Drops every queued task of `job` (on_cancel(false)) and tells its
  // in-flight tasks to cancel (on_cancel(true)). Later submissions and
  // re-keys into the job are dropped too. Returns the number of queued
  // tasks dropped.
  size_t CancelJob(uint64_t job);

  // Stops accepting tasks, drops queued and admitted-but-not-started tasks
  // (on_cancel(false)), tells in-flight ones to cancel (on_cancel(true)),
  // and joins the workers. Every submitted task has then either run exactly
  // once or been dropped exactly once. Tokens may still be released after.
  // Idempotent.
  void Shutdown();

  Stats GetStats() const;
  KeyStats GetKeyStats(absl::string_view key) const;

 private:
  friend class SlotToken;
  friend struct Task;
  struct KeyState;
  struct Shard;
  struct Worker;
  // Tasks admitted under a lock, pushed to a deque after it is released.
  using ReadyList = absl::InlinedVector<std::unique_ptr<Task>, 4>;

  Shard& ShardFor(absl::string_view key) const;
  std::unique_ptr<Task> MakeTask(TaskOptions options, TaskFn fn);
  void Drop(std::unique_ptr<Task> task);
  // Admits as many queued tasks of `key` as its limit allows, and with
  // `ahead_too` as many waiting at the key as its `ahead` allows after
  // that; appends them to *ready. Requires the shard's lock.
  void AdmitLocked(const std::string& key, KeyState& ks, Shard& shard,
                   ReadyList* ready, bool ahead_too = true);
  // Counts `t` as in flight on its key. Requires the shard's lock.
  void AdmitOneLocked(KeyState& ks, Task* t);
  bool TryTakeGlobalLocked(const std::string& key, KeyState& ks);
  void AdmitGlobalWaiters(ReadyList* ready);
  void Enqueue(std::unique_ptr<Task> task, KeyState& ks);
  // Removes and returns the next task to admit from `ks` (round-robin over
  // jobs, then largest weight). Requires ks.queued > 0 and the lock.
  std::unique_ptr<Task> PopNext(KeyState& ks);
  // The task PopNext would return, left queued.
  static const Task& PeekNext(const KeyState& ks);
  // Undoes AdmitOneLocked for a task that completed or was dropped
  // unstarted. Requires the shard's lock.
  static void UnadmitLocked(KeyState& ks, const Task& t);
  void PushReady(ReadyList ready);
  // With `run_here`, the first task admitted runs on this thread (see
  // SlotToken::ReleaseAndRun).
  void Release(std::unique_ptr<Task> task, bool run_here = false);
  std::unique_ptr<Task> TakeWork(int self);
  // Runs an admitted task's body on this thread, holding its slot.
  void RunBody(std::unique_ptr<Task> task);
  void WorkerLoop(int self);
  absl::Time Now() const;

  const Options options_;
  std::unique_ptr<Shard[]> shards_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;

  // Hot counters on their own cache lines: written by submitters, by
  // workers, or by both, so no two groups false-share.
  alignas(64) std::atomic<bool> stopping_{false};
  std::atomic<int> sleepers_{0};
  alignas(64) std::atomic<uint64_t> next_id_{1};  // submitters
  std::atomic<uint64_t> next_push_{0};
  std::atomic<uint64_t> submitted_{0};
  // Admitted tasks not yet taken by a worker (including those on their way
  // to a deque).
  alignas(64) std::atomic<int64_t> ready_count_{0};
  alignas(64) std::atomic<uint64_t> executed_{0};  // bodies run (RunBody)
  std::atomic<uint64_t> inline_runs_{0};           // ... by ReleaseAndRun
  std::atomic<uint64_t> steals_{0};
  std::atomic<uint64_t> dropped_{0};
  alignas(64) std::mutex idle_mu_;
  std::condition_variable idle_cv_;

  // Global cap: in-flight count and keys waiting only for it. Lock order:
  // a shard's lock, then global_mu_ (never the other way).
  Mutex global_mu_;
  int global_in_flight_ ABSL_GUARDED_BY(global_mu_) = 0;
  std::deque<std::string> global_waiters_ ABSL_GUARDED_BY(global_mu_);

  Mutex shutdown_mu_;  // serializes Shutdown(); taken before any other
};

}  // namespace shutter::scheduler

#endif  // SHUTTER_SCHEDULER_SCHEDULER_H_
