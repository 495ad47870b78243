#include "scheduler/scheduler.h"

#include <pthread.h>

#include <algorithm>
#include <utility>

#include "absl/container/node_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "scheduler/spin_lock.h"

namespace shutter::scheduler {

// A task from submission to completion. Owned by its key's queue, then by
// a worker deque, then by the SlotToken handed to its body.
struct Task {
  uint64_t id = 0;
  std::string key;
  uint64_t job = 0;
  int64_t weight = 0;
  bool waits_at_key = false;
  TaskFn fn;
  std::function<void(bool)> on_cancel;
  absl::Time enqueued;
  // Where the task's key lives (stable: keys are never erased and live in
  // a node map), so completion does not hash the key again.
  Scheduler::Shard* shard = nullptr;
  Scheduler::KeyState* ks = nullptr;
};

namespace {
constexpr size_t kShards = 64;

// Max-heap order for a job's queue: larger weight first, then older.
struct HeapLess {
  bool operator()(const std::unique_ptr<Task>& a,
                  const std::unique_ptr<Task>& b) const {
    if (a->weight != b->weight) return a->weight < b->weight;
    return a->id > b->id;
  }
};
using JobQueue = std::vector<std::unique_ptr<Task>>;  // a heap by HeapLess

thread_local Scheduler* tls_scheduler = nullptr;
thread_local int tls_worker = -1;
// True while this thread runs a task body (a worker's, or ReleaseAndRun's).
thread_local bool tls_in_body = false;

// The job whose turn it is on a key (round-robin: the first after the last
// served, wrapping around), as an iterator into its `jobs`. Requires a
// queued task. A template so that it needs no name for the private
// Scheduler::KeyState.
template <typename KeyStateT>
auto NextJob(KeyStateT& ks) {
  auto jit = ks.jobs.upper_bound(ks.last_job);
  return jit == ks.jobs.end() ? ks.jobs.begin() : jit;
}

const std::string& EmptyString() {
  static const std::string* s = new std::string;
  return *s;
}
}  // namespace

struct Scheduler::KeyState {
  int limit = -1;  // -1: options_.default_limit
  int ahead = 0;
  int in_flight = 0;
  // In flight without waits_at_key: while any is, nothing goes ahead.
  int in_flight_strict = 0;
  int peak_in_flight = 0;
  uint64_t completed = 0;
  absl::Duration queued_time;
  bool waiting_global = false;
  size_t queued = 0;
  std::map<uint64_t, JobQueue> jobs;  // job id -> its queued tasks
  uint64_t last_job = 0;              // round-robin cursor
  // Admitted, not completed, with a cancel callback (CancelJob/Shutdown
  // must reach them).
  absl::flat_hash_map<uint64_t, Task*> running;
};

// Keys are spread over shards, each under its own spin lock (its critical
// sections are a few map and pointer operations). Lock order: a shard's
// lock, then global_mu_; two shards (Rekey only) in address order.
struct alignas(64) Scheduler::Shard {
  SpinLock mu;
  absl::node_hash_map<std::string, KeyState> keys ABSL_GUARDED_BY(mu);
  absl::flat_hash_set<uint64_t> cancelled_jobs ABSL_GUARDED_BY(mu);
};

struct alignas(64) Scheduler::Worker {
  SpinLock mu;  // never held with another lock
  std::deque<std::unique_ptr<Task>> deque ABSL_GUARDED_BY(mu);
};

// ---- SlotToken ----

SlotToken::SlotToken() = default;
SlotToken::SlotToken(Scheduler* owner, std::unique_ptr<Task> task)
    : owner_(owner), task_(std::move(task)) {}
SlotToken::SlotToken(SlotToken&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)),
      task_(std::move(other.task_)) {}
SlotToken& SlotToken::operator=(SlotToken&& other) noexcept {
  if (this != &other) {
    Release();
    owner_ = std::exchange(other.owner_, nullptr);
    task_ = std::move(other.task_);
  }
  return *this;
}
SlotToken::~SlotToken() { Release(); }

void SlotToken::Release() {
  if (task_ == nullptr) return;
  Scheduler* owner = std::exchange(owner_, nullptr);
  owner->Release(std::move(task_));
}

void SlotToken::ReleaseAndRun() {
  if (task_ == nullptr) return;
  Scheduler* owner = std::exchange(owner_, nullptr);
  owner->Release(std::move(task_), /*run_here=*/!tls_in_body);
}

const std::string& SlotToken::key() const {
  return task_ ? task_->key : EmptyString();
}
uint64_t SlotToken::job() const { return task_ ? task_->job : 0; }
uint64_t SlotToken::task_id() const { return task_ ? task_->id : 0; }

// ---- Scheduler ----

Scheduler::Scheduler(Options options)
    : options_(std::move(options)), shards_(new Shard[kShards]) {
  int n = std::max(1, options_.num_workers);
  for (int i = 0; i < n; ++i) workers_.push_back(std::make_unique<Worker>());
  for (int i = 0; i < n; ++i) {
    threads_.emplace_back([this, i] { WorkerLoop(i); });
  }
}

Scheduler::~Scheduler() { Shutdown(); }

absl::Time Scheduler::Now() const {
  return options_.now ? options_.now() : absl::Now();
}

Scheduler::Shard& Scheduler::ShardFor(absl::string_view key) const {
  return shards_[absl::Hash<absl::string_view>()(key) % kShards];
}

void Scheduler::Enqueue(std::unique_ptr<Task> task, KeyState& ks) {
  JobQueue& q = ks.jobs[task->job];
  q.push_back(std::move(task));
  std::push_heap(q.begin(), q.end(), HeapLess());
  ++ks.queued;
}

std::unique_ptr<Task> Scheduler::PopNext(KeyState& ks) {
  auto jit = NextJob(ks);
  JobQueue& q = jit->second;
  std::pop_heap(q.begin(), q.end(), HeapLess());
  std::unique_ptr<Task> t = std::move(q.back());
  q.pop_back();
  ks.last_job = jit->first;
  if (q.empty()) ks.jobs.erase(jit);
  --ks.queued;
  return t;
}

const Task& Scheduler::PeekNext(const KeyState& ks) {
  return *NextJob(ks)->second.front();  // the heap's top
}

bool Scheduler::TryTakeGlobalLocked(const std::string& key, KeyState& ks) {
  if (options_.global_limit <= 0) return true;
  LockGuard<Mutex> g(global_mu_);
  if (global_in_flight_ < options_.global_limit) {
    ++global_in_flight_;
    return true;
  }
  if (!ks.waiting_global) {
    ks.waiting_global = true;
    global_waiters_.push_back(key);
  }
  return false;
}

void Scheduler::AdmitOneLocked(KeyState& ks, Task* t) {
  ++ks.in_flight;
  if (!t->waits_at_key) ++ks.in_flight_strict;
  ks.peak_in_flight = std::max(ks.peak_in_flight, ks.in_flight);
  if (t->on_cancel) ks.running[t->id] = t;
  // Counted as ready from admission on (before it reaches a deque), so
  // workers never exit at shutdown while an admitted task is in transit.
  ready_count_.fetch_add(1);
}

void Scheduler::UnadmitLocked(KeyState& ks, const Task& t) {
  --ks.in_flight;
  if (!t.waits_at_key) --ks.in_flight_strict;
  if (t.on_cancel) ks.running.erase(t.id);
}

void Scheduler::AdmitLocked(const std::string& key, KeyState& ks, Shard& shard,
                            ReadyList* ready, bool ahead_too) {
  if (stopping_.load() || ks.queued == 0) return;
  const int limit = ks.limit < 0 ? options_.default_limit : ks.limit;
  // Past the limit only tasks that wait at the key, only while all in
  // flight do, and only in queue order (a task that may not go ahead is
  // not overtaken by one that may).
  auto admissible = [&] {
    if (ks.in_flight < limit) return true;
    return ahead_too && limit > 0 && ks.in_flight < limit + ks.ahead &&
           ks.in_flight_strict == 0 && PeekNext(ks).waits_at_key;
  };
  absl::Time now;
  bool have_now = false;
  while (ks.queued > 0 && admissible() && TryTakeGlobalLocked(key, ks)) {
    std::unique_ptr<Task> t = PopNext(ks);
    if (!have_now) {
      now = Now();
      have_now = true;
    }
    ks.queued_time += now - t->enqueued;
    AdmitOneLocked(ks, t.get());
    ready->push_back(std::move(t));
  }
}

void Scheduler::AdmitGlobalWaiters(ReadyList* ready) {
  if (options_.global_limit <= 0) return;
  for (;;) {
    std::string key;
    {
      LockGuard<Mutex> g(global_mu_);
      if (global_in_flight_ >= options_.global_limit ||
          global_waiters_.empty()) {
        return;
      }
      key = std::move(global_waiters_.front());
      global_waiters_.pop_front();
    }
    Shard& shard = ShardFor(key);
    LockGuard<SpinLock> l(shard.mu);
    KeyState& ks = shard.keys[key];
    ks.waiting_global = false;
    AdmitLocked(key, ks, shard, ready);
  }
}

void Scheduler::PushReady(ReadyList ready) {
  if (ready.empty()) return;
  const size_t n = workers_.size();
  size_t target = (tls_scheduler == this && tls_worker >= 0)
                      ? static_cast<size_t>(tls_worker)
                      : next_push_.fetch_add(1, std::memory_order_relaxed) % n;
  const int64_t count = static_cast<int64_t>(ready.size());
  {
    Worker& w = *workers_[target];
    LockGuard<SpinLock> l(w.mu);
    for (auto& t : ready) w.deque.push_back(std::move(t));
  }
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> l(idle_mu_);
    if (count > 1) {
      idle_cv_.notify_all();
    } else {
      idle_cv_.notify_one();
    }
  }
}

std::unique_ptr<Task> Scheduler::MakeTask(TaskOptions options, TaskFn fn) {
  auto t = std::make_unique<Task>();
  t->id = next_id_.fetch_add(1, std::memory_order_relaxed);
  t->key = std::move(options.key);
  t->job = options.job;
  t->weight = options.weight;
  t->waits_at_key = options.waits_at_key;
  t->fn = std::move(fn);
  t->on_cancel = std::move(options.on_cancel);
  submitted_.fetch_add(1, std::memory_order_relaxed);
  return t;
}

void Scheduler::Drop(std::unique_ptr<Task> task) {
  dropped_.fetch_add(1);
  if (task->on_cancel) task->on_cancel(false);
}

uint64_t Scheduler::Submit(TaskOptions options, TaskFn fn) {
  std::unique_ptr<Task> t = MakeTask(std::move(options), std::move(fn));
  const uint64_t id = t->id;
  ReadyList ready;
  Shard& shard = ShardFor(t->key);
  {
    LockGuard<SpinLock> l(shard.mu);
    if (!stopping_.load() && (shard.cancelled_jobs.empty() ||
                              !shard.cancelled_jobs.contains(t->job))) {
      KeyState& ks = shard.keys[t->key];
      t->shard = &shard;
      t->ks = &ks;
      const int limit = ks.limit < 0 ? options_.default_limit : ks.limit;
      if (ks.queued == 0 && ks.in_flight < limit &&
          TryTakeGlobalLocked(t->key, ks)) {
        // Fast path: a free slot and nobody queued for it.
        AdmitOneLocked(ks, t.get());
        ready.push_back(std::move(t));
      } else {
        t->enqueued = Now();
        const Task* raw = t.get();
        Enqueue(std::move(t), ks);
        AdmitLocked(raw->key, ks, shard, &ready);
      }
    }
  }
  if (t != nullptr) {  // refused
    Drop(std::move(t));
    return 0;
  }
  PushReady(std::move(ready));
  return id;
}

std::vector<uint64_t> Scheduler::SubmitBatch(
    std::vector<std::pair<TaskOptions, TaskFn>> tasks) {
  std::vector<uint64_t> ids;
  ids.reserve(tasks.size());
  std::vector<std::pair<Shard*, KeyState*>> touched;
  const absl::Time now = Now();
  for (auto& [options, fn] : tasks) {
    std::unique_ptr<Task> t = MakeTask(std::move(options), std::move(fn));
    ids.push_back(t->id);
    Shard& shard = ShardFor(t->key);
    {
      LockGuard<SpinLock> l(shard.mu);
      if (!stopping_.load() && !shard.cancelled_jobs.contains(t->job)) {
        KeyState& ks = shard.keys[t->key];
        t->shard = &shard;
        t->ks = &ks;
        t->enqueued = now;
        Enqueue(std::move(t), ks);
        touched.emplace_back(&shard, &ks);
      }
    }
    if (t != nullptr) {
      ids.back() = 0;
      Drop(std::move(t));
    }
  }
  std::sort(touched.begin(), touched.end());
  touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
  // Every key's slots first, then what waits ahead at the keys: the tasks
  // that can start at once are not behind the others.
  for (const bool ahead : {false, true}) {
    for (auto [shard, ks] : touched) {
      ReadyList ready;
      {
        LockGuard<SpinLock> l(shard->mu);
        if (ks->queued > 0) {
          // The key's name: any queued task carries it.
          const std::string key = ks->jobs.begin()->second.front()->key;
          AdmitLocked(key, *ks, *shard, &ready, ahead);
        }
      }
      PushReady(std::move(ready));
    }
  }
  return ids;
}

void Scheduler::SetLimit(absl::string_view key, int limit, int ahead) {
  ReadyList ready;
  Shard& shard = ShardFor(key);
  {
    LockGuard<SpinLock> l(shard.mu);
    std::string k(key);
    KeyState& ks = shard.keys[k];
    ks.limit = std::max(0, limit);
    ks.ahead = std::max(0, ahead);
    AdmitLocked(k, ks, shard, &ready);
  }
  PushReady(std::move(ready));
}

absl::Status Scheduler::Rekey(uint64_t task_id, const std::string& from_key,
                              const std::string& to_key) {
  Shard& from = ShardFor(from_key);
  Shard& to = ShardFor(to_key);
  ReadyList ready;
  std::unique_ptr<Task> dropped;
  {
    PairLock<SpinLock> l(from.mu, to.mu);
    auto kit = from.keys.find(from_key);
    if (kit == from.keys.end()) {
      return absl::NotFoundError(absl::StrCat("unknown key ", from_key));
    }
    KeyState& src = kit->second;
    // Re-keying is rare (a leader moved): a scan of the key's queue is fine
    // and keeps the hot path free of an index.
    std::unique_ptr<Task> t;
    for (auto jit = src.jobs.begin(); jit != src.jobs.end(); ++jit) {
      JobQueue& q = jit->second;
      auto it = std::find_if(q.begin(), q.end(),
                             [&](const auto& p) { return p->id == task_id; });
      if (it == q.end()) continue;
      t = std::move(*it);
      *it = std::move(q.back());
      q.pop_back();
      std::make_heap(q.begin(), q.end(), HeapLess());
      if (q.empty()) src.jobs.erase(jit);
      --src.queued;
      break;
    }
    if (!t) {
      return absl::NotFoundError(absl::StrCat(
          "task ", task_id, " is not queued under key ", from_key));
    }
    t->key = to_key;
    t->enqueued = Now();
    if (to.cancelled_jobs.contains(t->job) || stopping_.load()) {
      dropped = std::move(t);
    } else {
      KeyState& dst = to.keys[to_key];
      t->shard = &to;
      t->ks = &dst;
      Enqueue(std::move(t), dst);
      AdmitLocked(to_key, dst, to, &ready);
    }
  }
  if (dropped) {
    dropped_.fetch_add(1);
    if (dropped->on_cancel) dropped->on_cancel(false);
  }
  PushReady(std::move(ready));
  return absl::OkStatus();
}

size_t Scheduler::CancelJob(uint64_t job) {
  std::vector<std::unique_ptr<Task>> dropped;
  std::vector<std::function<void(bool)>> running;
  for (size_t i = 0; i < kShards; ++i) {
    Shard& shard = shards_[i];
    LockGuard<SpinLock> l(shard.mu);
    shard.cancelled_jobs.insert(job);
    for (auto& [key, ks] : shard.keys) {
      auto jit = ks.jobs.find(job);
      if (jit != ks.jobs.end()) {
        for (auto& t : jit->second) dropped.push_back(std::move(t));
        ks.queued -= jit->second.size();
        ks.jobs.erase(jit);
      }
      for (auto& [id, t] : ks.running) {
        if (t->job == job) running.push_back(t->on_cancel);
      }
    }
  }
  dropped_.fetch_add(dropped.size());
  for (auto& t : dropped) {
    if (t->on_cancel) t->on_cancel(false);
  }
  for (auto& cb : running) cb(true);
  return dropped.size();
}

void Scheduler::Release(std::unique_ptr<Task> task, bool run_here) {
  if (options_.global_limit > 0) {
    LockGuard<Mutex> g(global_mu_);
    --global_in_flight_;
  }
  ReadyList ready;
  {
    LockGuard<SpinLock> l(task->shard->mu);
    KeyState& ks = *task->ks;
    UnadmitLocked(ks, *task);
    ++ks.completed;
    AdmitLocked(task->key, ks, *task->shard, &ready);
  }
  AdmitGlobalWaiters(&ready);
  std::unique_ptr<Task> here;
  if (run_here && !ready.empty()) {
    here = std::move(ready.front());
    ready.erase(ready.begin());
    ready_count_.fetch_sub(1);  // taken, as a worker takes it
  }
  PushReady(std::move(ready));
  task.reset();  // its captures may be heavy; destroyed outside any lock
  if (here != nullptr) {
    inline_runs_.fetch_add(1, std::memory_order_relaxed);
    RunBody(std::move(here));
  }
}

void Scheduler::RunBody(std::unique_ptr<Task> task) {
  executed_.fetch_add(1, std::memory_order_relaxed);
  TaskFn fn = std::move(task->fn);
  tls_in_body = true;
  std::move(fn)(SlotToken(this, std::move(task)));
  tls_in_body = false;
}

std::unique_ptr<Task> Scheduler::TakeWork(int self) {
  {
    Worker& w = *workers_[self];
    LockGuard<SpinLock> l(w.mu);
    if (!w.deque.empty()) {
      auto t = std::move(w.deque.front());
      w.deque.pop_front();
      ready_count_.fetch_sub(1);
      return t;
    }
  }
  const int n = static_cast<int>(workers_.size());
  for (int i = 1; i < n; ++i) {
    Worker& v = *workers_[(self + i) % n];
    LockGuard<SpinLock> l(v.mu);
    if (!v.deque.empty()) {
      auto t = std::move(v.deque.back());
      v.deque.pop_back();
      ready_count_.fetch_sub(1);
      steals_.fetch_add(1, std::memory_order_relaxed);
      return t;
    }
  }
  return nullptr;
}

void Scheduler::WorkerLoop(int self) {
  tls_scheduler = this;
  tls_worker = self;
  {
    std::string name = absl::StrCat(options_.thread_name, "-", self);
    name.resize(std::min<size_t>(name.size(), 15));
    pthread_setname_np(pthread_self(), name.c_str());
  }
  // Before sleeping, an idle worker polls a little (yielding the CPU):
  // tasks usually arrive in bursts, and a futex wake per task costs more
  // than the task.
  constexpr int kIdlePolls = 200;
  int idle = 0;
  for (;;) {
    std::unique_ptr<Task> t =
        (idle == 0 || ready_count_.load() > 0) ? TakeWork(self) : nullptr;
    if (t != nullptr) {
      idle = 0;
      RunBody(std::move(t));
      continue;
    }
    if (++idle < kIdlePolls && !stopping_.load()) {
      std::this_thread::yield();
      continue;
    }
    idle = 0;
    std::unique_lock<std::mutex> l(idle_mu_);
    sleepers_.fetch_add(1);
    idle_cv_.wait(
        l, [this] { return ready_count_.load() > 0 || stopping_.load(); });
    sleepers_.fetch_sub(1);
    if (stopping_.load() && ready_count_.load() <= 0) return;
  }
}

void Scheduler::Shutdown() {
  LockGuard<Mutex> serial(shutdown_mu_);
  if (threads_.empty()) return;
  stopping_.store(true);
  // 1. Queued tasks are dropped.
  std::vector<std::unique_ptr<Task>> dropped;
  for (size_t i = 0; i < kShards; ++i) {
    Shard& shard = shards_[i];
    LockGuard<SpinLock> l(shard.mu);
    for (auto& [key, ks] : shard.keys) {
      for (auto& [job, q] : ks.jobs) {
        for (auto& t : q) dropped.push_back(std::move(t));
      }
      ks.jobs.clear();
      ks.queued = 0;
    }
  }
  // 2. Admitted tasks no worker has started yet are dropped too, giving
  //    back their slots. No admission happens once stopping_ is set; a task
  //    admitted just before and still in transit to a deque is counted in
  //    ready_count_, so the workers stay to run it.
  std::vector<std::unique_ptr<Task>> unstarted;
  for (auto& w : workers_) {
    LockGuard<SpinLock> l(w->mu);
    for (auto& t : w->deque) unstarted.push_back(std::move(t));
    ready_count_.fetch_sub(static_cast<int64_t>(w->deque.size()));
    w->deque.clear();
  }
  for (auto& t : unstarted) {
    if (options_.global_limit > 0) {
      LockGuard<Mutex> g(global_mu_);
      --global_in_flight_;
    }
    LockGuard<SpinLock> l(t->shard->mu);
    UnadmitLocked(*t->ks, *t);
    dropped.push_back(std::move(t));
  }
  // 3. In-flight tasks are told to cancel.
  std::vector<std::function<void(bool)>> running;
  for (size_t i = 0; i < kShards; ++i) {
    Shard& shard = shards_[i];
    LockGuard<SpinLock> l(shard.mu);
    for (auto& [key, ks] : shard.keys) {
      for (auto& [id, t] : ks.running) running.push_back(t->on_cancel);
    }
  }
  {
    std::lock_guard<std::mutex> l(idle_mu_);
    idle_cv_.notify_all();
  }
  for (auto& th : threads_) th.join();
  threads_.clear();
  dropped_.fetch_add(dropped.size());
  for (auto& t : dropped) {
    if (t->on_cancel) t->on_cancel(false);
  }
  dropped.clear();
  for (auto& cb : running) cb(true);
}

Scheduler::KeyStats Scheduler::GetKeyStats(absl::string_view key) const {
  Shard& shard = ShardFor(key);
  LockGuard<SpinLock> l(shard.mu);
  KeyStats s;
  auto it = shard.keys.find(key);
  if (it == shard.keys.end()) {
    s.limit = options_.default_limit;
    return s;
  }
  const KeyState& ks = it->second;
  s.limit = ks.limit < 0 ? options_.default_limit : ks.limit;
  s.ahead = ks.ahead;
  s.queued = static_cast<int>(ks.queued);
  s.in_flight = ks.in_flight;
  s.peak_in_flight = ks.peak_in_flight;
  s.completed = ks.completed;
  s.total_queued_time = ks.queued_time;
  return s;
}

Scheduler::Stats Scheduler::GetStats() const {
  Stats s;
  s.submitted = submitted_.load();
  s.executed = executed_.load();
  s.run_here = inline_runs_.load();
  s.dropped = dropped_.load();
  s.steals = steals_.load();
  for (size_t i = 0; i < kShards; ++i) {
    Shard& shard = shards_[i];
    std::vector<std::string> keys;
    {
      LockGuard<SpinLock> l(shard.mu);
      for (const auto& [key, ks] : shard.keys) keys.push_back(key);
    }
    for (const auto& k : keys) s.keys[k] = GetKeyStats(k);
  }
  return s;
}

}  // namespace shutter::scheduler
