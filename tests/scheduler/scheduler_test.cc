#include "scheduler/scheduler.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "gtest/gtest.h"

namespace shutter::scheduler {
namespace {

// Records started tasks and keeps their tokens, so the test decides when
// each one completes. std::mutex (not absl::Mutex) so ThreadSanitizer sees
// the synchronization.
class Harness {
 public:
  explicit Harness(Scheduler::Options o) : s_(std::move(o)) {}
  // Shut down first (its callbacks use the fields below), then the tokens
  // still held go back to the stopped scheduler, which is destroyed last.
  ~Harness() { s_.Shutdown(); }

  uint64_t Submit(const std::string& key, int64_t weight, int tag,
                  uint64_t job = 0, bool waits_at_key = false) {
    TaskOptions o;
    o.key = key;
    o.job = job;
    o.weight = weight;
    o.waits_at_key = waits_at_key;
    o.on_cancel = [this, tag](bool running) {
      std::lock_guard<std::mutex> l(mu_);
      (running ? cancelled_running_ : dropped_).push_back(tag);
      cv_.notify_all();
    };
    return s_.Submit(std::move(o), [this, tag](SlotToken t) {
      std::lock_guard<std::mutex> l(mu_);
      started_.push_back(tag);
      started_keys_.push_back(t.key());
      int& n = running_[t.key()];
      peak_[t.key()] = std::max(peak_[t.key()], ++n);
      tokens_.emplace_back(tag, std::move(t));
      cv_.notify_all();
    });
  }

  // Waits (bounded) until `n` tasks have started.
  bool WaitStarted(size_t n) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::seconds(10),
                        [&] { return started_.size() >= n; });
  }

  // Completes the running task tagged `tag`.
  void Complete(int tag) {
    SlotToken t;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (auto it = tokens_.begin(); it != tokens_.end(); ++it) {
        if (it->first == tag) {
          t = std::move(it->second);
          --running_[t.key()];
          tokens_.erase(it);
          break;
        }
      }
    }
    ASSERT_TRUE(t.held()) << "task " << tag << " is not running";
  }

  std::vector<int> started() {
    std::lock_guard<std::mutex> l(mu_);
    return started_;
  }
  std::vector<std::string> started_keys() {
    std::lock_guard<std::mutex> l(mu_);
    return started_keys_;
  }
  std::vector<int> dropped() {
    std::lock_guard<std::mutex> l(mu_);
    return dropped_;
  }
  std::vector<int> cancelled_running() {
    std::lock_guard<std::mutex> l(mu_);
    return cancelled_running_;
  }
  int peak(const std::string& key) {
    std::lock_guard<std::mutex> l(mu_);
    return peak_[key];
  }
  Scheduler& s() { return s_; }

  // Work conservation: no key has a free slot and a queued task.
  void ExpectWorkConserving(const std::vector<std::string>& keys) {
    for (const auto& k : keys) {
      auto st = s_.GetKeyStats(k);
      EXPECT_TRUE(st.queued == 0 || st.in_flight >= st.limit)
          << k << ": queued " << st.queued << ", in flight " << st.in_flight
          << ", limit " << st.limit;
    }
  }

 private:
  Scheduler s_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int> started_, dropped_, cancelled_running_;
  std::vector<std::string> started_keys_;
  std::map<std::string, int> running_, peak_;
  std::vector<std::pair<int, SlotToken>> tokens_;
};

Scheduler::Options Opts(int workers, int default_limit, int global = 0) {
  Scheduler::Options o;
  o.num_workers = workers;
  o.default_limit = default_limit;
  o.global_limit = global;
  return o;
}

TEST(SchedulerTest, KeyLimitHoldsAndAFullKeyDoesNotBlockOthers) {
  Harness h(Opts(2, 1));
  h.s().SetLimit("a", 2);
  for (int i = 0; i < 5; ++i) h.Submit("a", 0, i);
  h.Submit("b", 0, 100);
  ASSERT_TRUE(h.WaitStarted(3));
  auto a = h.s().GetKeyStats("a");
  EXPECT_EQ(a.in_flight, 2);
  EXPECT_EQ(a.queued, 3);
  EXPECT_EQ(h.s().GetKeyStats("b").in_flight, 1);
  h.ExpectWorkConserving({"a", "b"});
  for (int i = 0; i < 5; ++i) {
    h.Complete(i);
    h.ExpectWorkConserving({"a", "b"});
    ASSERT_TRUE(h.WaitStarted(3 + std::min(i + 1, 3)));
  }
  h.Complete(100);
  EXPECT_EQ(h.peak("a"), 2);
  EXPECT_EQ(h.s().GetKeyStats("a").completed, 5u);
}

TEST(SchedulerTest, LargestFirstWithinAJobTiesInSubmissionOrder) {
  Harness h(Opts(1, 1));
  h.s().SetLimit("a", 0);  // hold while queueing
  h.Submit("a", 10, 1);
  h.Submit("a", 50, 2);
  h.Submit("a", 10, 3);
  h.Submit("a", 99, 4);
  h.s().SetLimit("a", 1);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(h.WaitStarted(i + 1));
    h.Complete(h.started().back());
  }
  EXPECT_EQ(h.started(), (std::vector<int>{4, 2, 1, 3}));
}

TEST(SchedulerTest, BatchStartsLargestFirstFromTheFirstAdmission) {
  Scheduler::Options o = Opts(1, 2);
  std::mutex mu;
  std::vector<int64_t> started;
  std::vector<SlotToken> held;
  std::condition_variable cv;
  Scheduler s(o);
  std::vector<std::pair<TaskOptions, TaskFn>> batch;
  for (int64_t w : {5, 1, 9, 3, 7}) {
    batch.emplace_back(TaskOptions{"n", 1, w, nullptr}, [&, w](SlotToken t) {
      std::lock_guard<std::mutex> l(mu);
      started.push_back(w);
      held.push_back(std::move(t));
      cv.notify_all();
    });
  }
  auto ids = s.SubmitBatch(std::move(batch));
  ASSERT_EQ(ids.size(), 5u);
  for (uint64_t id : ids) EXPECT_GT(id, 0u);
  auto wait_for = [&](size_t n) {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, std::chrono::seconds(10),
                       [&] { return started.size() >= n; });
  };
  ASSERT_TRUE(wait_for(2));
  {
    std::lock_guard<std::mutex> l(mu);
    EXPECT_EQ(started, (std::vector<int64_t>{9, 7}));
  }
  for (size_t n = 3; n <= 5; ++n) {
    SlotToken t;
    {
      std::lock_guard<std::mutex> l(mu);
      t = std::move(held.front());
      held.erase(held.begin());
    }
    t.Release();
    ASSERT_TRUE(wait_for(n));
  }
  std::lock_guard<std::mutex> l(mu);
  EXPECT_EQ(started, (std::vector<int64_t>{9, 7, 5, 3, 1}));
  held.clear();
}

TEST(SchedulerTest, JobsTakeTurnsOnAKey) {
  Harness h(Opts(1, 1));
  h.s().SetLimit("n", 0);
  for (int i = 0; i < 6; ++i) h.Submit("n", 100, 10 + i, /*job=*/1);
  h.Submit("n", 1, 20, /*job=*/2);
  h.Submit("n", 1, 21, /*job=*/2);
  h.s().SetLimit("n", 1);
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(h.WaitStarted(i + 1));
    h.Complete(h.started().back());
  }
  // The small job is not starved behind the big one's larger tasks.
  auto order = h.started();
  auto pos = [&](int tag) {
    return std::find(order.begin(), order.end(), tag) - order.begin();
  };
  EXPECT_LE(pos(20), 2);
  EXPECT_LE(pos(21), 4);
}

TEST(SchedulerTest, LimitChangesWhileRunning) {
  Harness h(Opts(2, 3));
  for (int i = 0; i < 6; ++i) h.Submit("a", 0, i);
  ASSERT_TRUE(h.WaitStarted(3));
  h.s().SetLimit("a", 1);
  h.Complete(0);
  h.Complete(1);
  EXPECT_EQ(h.started().size(), 3u);  // still at the new limit
  h.Complete(2);
  ASSERT_TRUE(h.WaitStarted(4));
  EXPECT_EQ(h.s().GetKeyStats("a").in_flight, 1);
  h.s().SetLimit("a", 0);  // drained
  h.Complete(3);
  EXPECT_EQ(h.s().GetKeyStats("a").in_flight, 0);
  EXPECT_EQ(h.started().size(), 4u);
  h.s().SetLimit("a", 5);
  ASSERT_TRUE(h.WaitStarted(6));
  h.ExpectWorkConserving({"a"});
  for (int i = 4; i < 6; ++i) h.Complete(i);
}

TEST(SchedulerTest, TasksThatWaitAtTheKeyGoAheadOfAFullLimitUpToAhead) {
  Harness h(Opts(2, 1));
  h.s().SetLimit("a", 2, /*ahead=*/2);
  for (int i = 0; i < 6; ++i) h.Submit("a", 0, i, 0, /*waits_at_key=*/true);
  ASSERT_TRUE(h.WaitStarted(4));
  auto a = h.s().GetKeyStats("a");
  EXPECT_EQ(a.limit, 2);
  EXPECT_EQ(a.ahead, 2);
  EXPECT_EQ(a.in_flight, 4);
  EXPECT_EQ(a.queued, 2);
  h.Complete(0);
  ASSERT_TRUE(h.WaitStarted(5));
  EXPECT_EQ(h.s().GetKeyStats("a").in_flight, 4);
  // Lowering the bound admits nothing until the key is under it.
  h.s().SetLimit("a", 2, /*ahead=*/0);
  h.Complete(1);
  h.Complete(2);
  EXPECT_EQ(h.started().size(), 5u);
  h.Complete(3);
  ASSERT_TRUE(h.WaitStarted(6));
  EXPECT_EQ(h.s().GetKeyStats("a").in_flight, 2);
  // A drained key takes nothing ahead either.
  h.s().SetLimit("a", 0, /*ahead=*/3);
  h.Submit("a", 0, 6, 0, true);
  h.Complete(4);
  h.Complete(5);
  EXPECT_EQ(h.started().size(), 6u);
  EXPECT_EQ(h.s().GetKeyStats("a").queued, 1);
  EXPECT_EQ(h.peak("a"), 4);
}

TEST(SchedulerTest, NothingGoesAheadWhileATaskThatDoesNotWaitIsInFlight) {
  Harness h(Opts(2, 1));
  h.s().SetLimit("b", 2, /*ahead=*/2);
  h.Submit("b", 0, 10);  // does not wait at the key
  ASSERT_TRUE(h.WaitStarted(1));
  for (int i = 11; i <= 13; ++i) h.Submit("b", 0, i, 0, true);
  ASSERT_TRUE(h.WaitStarted(2));  // 11, within the limit
  EXPECT_EQ(h.started().size(), 2u);
  EXPECT_EQ(h.s().GetKeyStats("b").in_flight, 2);
  h.Complete(10);
  // 12 within the limit, then 13 ahead: all in flight wait at the key.
  ASSERT_TRUE(h.WaitStarted(4));
  EXPECT_EQ(h.s().GetKeyStats("b").in_flight, 3);
  for (int i = 11; i <= 13; ++i) h.Complete(i);
}

TEST(SchedulerTest, ATaskThatDoesNotWaitIsNotOvertakenByOneThatDoes) {
  Harness h(Opts(1, 1));
  h.s().SetLimit("c", 1, /*ahead=*/1);
  h.Submit("c", 0, 20, 0, true);
  ASSERT_TRUE(h.WaitStarted(1));
  h.Submit("c", 0, 21);  // next in line, may not go ahead
  h.Submit("c", 0, 22, 0, true);
  EXPECT_EQ(h.started().size(), 1u);
  EXPECT_EQ(h.s().GetKeyStats("c").queued, 2);
  h.Complete(20);
  ASSERT_TRUE(h.WaitStarted(2));
  EXPECT_EQ(h.started().size(), 2u);  // 22 waits behind 21, in flight
  h.Complete(21);
  ASSERT_TRUE(h.WaitStarted(3));
  EXPECT_EQ(h.started(), (std::vector<int>{20, 21, 22}));
  h.Complete(22);
}

TEST(SchedulerTest, BatchFillsEveryKeysLimitBeforeAnythingGoesAhead) {
  Scheduler s(Opts(1, 1));
  std::mutex mu;
  std::vector<std::string> started;
  std::vector<SlotToken> held;
  std::condition_variable cv;
  const std::vector<std::string> keys = {"n1", "n2", "n3"};
  for (const auto& k : keys) s.SetLimit(k, 1, /*ahead=*/1);
  std::vector<std::pair<TaskOptions, TaskFn>> batch;
  for (const auto& k : keys) {
    for (int i = 0; i < 2; ++i) {
      TaskOptions o{k, 1, 0, nullptr};
      o.waits_at_key = true;
      batch.emplace_back(std::move(o), [&](SlotToken t) {
        std::lock_guard<std::mutex> l(mu);
        started.push_back(t.key());
        held.push_back(std::move(t));
        cv.notify_all();
      });
    }
  }
  s.SubmitBatch(std::move(batch));
  {
    std::unique_lock<std::mutex> l(mu);
    ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(10),
                            [&] { return started.size() >= 6; }));
    // One worker runs bodies in admission order: a task per key first.
    std::set<std::string> first(started.begin(), started.begin() + 3);
    EXPECT_EQ(first.size(), 3u);
  }
  for (const auto& k : keys) EXPECT_EQ(s.GetKeyStats(k).in_flight, 2);
  std::lock_guard<std::mutex> l(mu);
  held.clear();
}

TEST(SchedulerTest, GlobalLimitRunsOneAtATimeAcrossKeys) {
  Harness h(Opts(2, 4, /*global=*/1));
  h.Submit("a", 0, 1);
  h.Submit("b", 0, 2);
  h.Submit("c", 0, 3);
  ASSERT_TRUE(h.WaitStarted(1));
  EXPECT_EQ(h.started().size(), 1u);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(h.WaitStarted(i + 1));
    EXPECT_EQ(h.started().size(), static_cast<size_t>(i + 1));
    h.Complete(h.started().back());
  }
  EXPECT_EQ(h.started(), (std::vector<int>{1, 2, 3}));
}

TEST(SchedulerTest, RekeyMovesAQueuedTaskAndKeepsItsPlace) {
  Harness h(Opts(1, 1));
  h.s().SetLimit("old", 0);
  h.s().SetLimit("new", 0);
  uint64_t z = h.Submit("old", 3, 30, 7);
  h.Submit("new", 5, 50, 7);
  h.Submit("new", 1, 10, 7);
  ASSERT_TRUE(h.s().Rekey(z, "old", "new").ok());
  EXPECT_EQ(h.s().GetKeyStats("old").queued, 0);
  EXPECT_EQ(h.s().GetKeyStats("new").queued, 3);
  EXPECT_FALSE(h.s().Rekey(z, "old", "new").ok());  // no longer under "old"
  h.s().SetLimit("new", 1);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(h.WaitStarted(i + 1));
    h.Complete(h.started().back());
  }
  EXPECT_EQ(h.started(), (std::vector<int>{50, 30, 10}));
  EXPECT_EQ(h.started_keys()[1], "new");
  EXPECT_EQ(h.s().GetKeyStats("new").peak_in_flight, 1);
  // A started task cannot be re-keyed.
  uint64_t r = h.Submit("new", 0, 99);
  ASSERT_TRUE(h.WaitStarted(4));
  EXPECT_EQ(h.s().Rekey(r, "new", "old").code(), absl::StatusCode::kNotFound);
  h.Complete(99);
}

TEST(SchedulerTest, CancelJobDropsQueuedAndSignalsInFlight) {
  Harness h(Opts(2, 1));
  h.Submit("a", 0, 1, /*job=*/5);  // starts
  h.Submit("a", 0, 2, /*job=*/5);  // queued
  h.Submit("a", 0, 3, /*job=*/5);  // queued
  h.Submit("a", 0, 4, /*job=*/6);  // other job, queued
  ASSERT_TRUE(h.WaitStarted(1));
  EXPECT_EQ(h.s().CancelJob(5), 2u);
  std::vector<int> d = h.dropped();
  std::sort(d.begin(), d.end());
  EXPECT_EQ(d, (std::vector<int>{2, 3}));
  EXPECT_EQ(h.cancelled_running(), (std::vector<int>{1}));
  EXPECT_EQ(h.Submit("a", 0, 7, /*job=*/5), 0u);  // cancelled job
  h.Complete(1);
  ASSERT_TRUE(h.WaitStarted(2));
  EXPECT_EQ(h.started(), (std::vector<int>{1, 4}));
  h.Complete(4);
  auto st = h.s().GetStats();
  EXPECT_EQ(st.submitted, 5u);
  EXPECT_EQ(st.executed + st.dropped, st.submitted);
}

TEST(SchedulerTest, SlotComesBackOnEveryPath) {
  std::mutex mu;
  std::condition_variable cv;
  int ran = 0;
  Scheduler s(Opts(2, 1));  // last: workers joined before the state above
  auto bump = [&] {
    std::lock_guard<std::mutex> l(mu);
    ++ran;
    cv.notify_all();
  };
  // 1. The body ignores its token (an early error return).
  s.Submit({"k", 0, 0, nullptr}, [&](SlotToken) { bump(); });
  // 2. The token is moved into a callback that is destroyed without running
  //    (a dropped RPC completion).
  s.Submit({"k", 0, 0, nullptr}, [&](SlotToken t) {
    auto cb = std::make_unique<absl::AnyInvocable<void()>>(
        [tok = std::move(t)]() mutable { tok.Release(); });
    cb.reset();
    bump();
  });
  // 3. Released twice (idempotent), then moved-from and destroyed.
  s.Submit({"k", 0, 0, nullptr}, [&](SlotToken t) {
    t.Release();
    t.Release();
    SlotToken moved = std::move(t);
    bump();
  });
  std::unique_lock<std::mutex> l(mu);
  ASSERT_TRUE(
      cv.wait_for(l, std::chrono::seconds(10), [&] { return ran == 3; }));
  l.unlock();
  auto st = s.GetKeyStats("k");
  EXPECT_EQ(st.in_flight, 0);
  EXPECT_EQ(st.completed, 3u);
}

TEST(SchedulerTest, ReleaseAndRunStartsTheNextTaskOnTheCallersThread) {
  std::mutex mu;
  std::condition_variable cv;
  SlotToken held;  // A's slot, handed to this thread (an RPC callback)
  std::thread::id b_thread, c_thread;
  bool c_ran = false;
  Scheduler s(Opts(2, 1));  // last: workers joined before the state above
  s.Submit({"k", 0, 0, nullptr}, [&](SlotToken t) {  // A
    std::lock_guard<std::mutex> l(mu);
    held = std::move(t);
    cv.notify_all();
  });
  s.Submit({"k", 0, 0, nullptr}, [&](SlotToken t) {  // B
    {
      std::lock_guard<std::mutex> l(mu);
      b_thread = std::this_thread::get_id();
    }
    t.ReleaseAndRun();  // inside a body: a plain Release, C goes to a worker
  });
  s.Submit({"k", 0, 0, nullptr}, [&](SlotToken t) {  // C
    t.Release();  // before it says it ran: the counts below include it
    std::lock_guard<std::mutex> l(mu);
    c_thread = std::this_thread::get_id();
    c_ran = true;
    cv.notify_all();
  });
  SlotToken a;
  {
    std::unique_lock<std::mutex> l(mu);
    ASSERT_TRUE(
        cv.wait_for(l, std::chrono::seconds(10), [&] { return held.held(); }));
    a = std::move(held);
  }
  EXPECT_EQ(s.GetKeyStats("k").in_flight, 1);  // B and C wait for A's slot
  a.ReleaseAndRun();  // B runs here, before this returns
  {
    std::unique_lock<std::mutex> l(mu);
    EXPECT_EQ(b_thread, std::this_thread::get_id());
    ASSERT_TRUE(
        cv.wait_for(l, std::chrono::seconds(10), [&] { return c_ran; }));
    EXPECT_NE(c_thread, std::this_thread::get_id());
  }
  a.ReleaseAndRun();  // idempotent
  auto st = s.GetStats();
  EXPECT_EQ(st.run_here, 1u);
  EXPECT_EQ(st.executed, 3u);
  EXPECT_EQ(s.GetKeyStats("k").in_flight, 0);
  EXPECT_EQ(s.GetKeyStats("k").completed, 3u);
}

TEST(SchedulerTest, ShutdownAccountsForEveryTaskOnce) {
  Harness h(Opts(2, 1));
  for (int i = 0; i < 5; ++i) h.Submit("a", 0, i);
  ASSERT_TRUE(h.WaitStarted(1));
  h.s().Shutdown();
  EXPECT_EQ(h.dropped().size(), 4u);
  EXPECT_EQ(h.cancelled_running(), (std::vector<int>{0}));
  h.Complete(0);  // a token released after shutdown is fine
  EXPECT_EQ(h.Submit("a", 0, 9), 0u);
  auto st = h.s().GetStats();
  EXPECT_EQ(st.executed, 1u);
  EXPECT_EQ(st.dropped, 5u);
  EXPECT_EQ(st.submitted, 6u);
  EXPECT_EQ(h.s().GetKeyStats("a").in_flight, 0);
}

TEST(SchedulerTest, IdleWorkerStealsFromABusyOne) {
  std::mutex mu;
  std::condition_variable cv;
  std::set<std::thread::id> threads;
  int done = 0;
  // Declared last: destroyed (workers joined) before the state above.
  Scheduler s(Opts(2, 1000));
  // The parent body submits children from a worker: they land on that
  // worker's own deque, and the parent waits until some child ran on the
  // other worker, which can only have stolen it.
  s.Submit({"k", 0, 0, nullptr}, [&](SlotToken parent) {
    const auto me = std::this_thread::get_id();
    for (int i = 0; i < 50; ++i) {
      s.Submit({"k", 0, 0, nullptr}, [&](SlotToken) {
        std::lock_guard<std::mutex> l(mu);
        threads.insert(std::this_thread::get_id());
        ++done;
        cv.notify_all();
      });
    }
    std::unique_lock<std::mutex> l(mu);
    cv.wait_for(l, std::chrono::seconds(10),
                [&] { return threads.count(me) == 0 && !threads.empty(); });
  });
  std::unique_lock<std::mutex> l(mu);
  ASSERT_TRUE(
      cv.wait_for(l, std::chrono::seconds(10), [&] { return done == 50; }));
  l.unlock();
  EXPECT_GT(s.GetStats().steals, 0u);
}

TEST(SchedulerTest, QueuedTimeUsesTheInjectedClock) {
  std::mutex mu;
  absl::Time now = absl::FromUnixSeconds(1000);
  Scheduler::Options o = Opts(1, 1);
  o.now = [&] {
    std::lock_guard<std::mutex> l(mu);
    return now;
  };
  Harness h(o);
  h.Submit("a", 0, 1);
  h.Submit("a", 0, 2);
  ASSERT_TRUE(h.WaitStarted(1));
  {
    std::lock_guard<std::mutex> l(mu);
    now += absl::Seconds(7);
  }
  h.Complete(1);
  ASSERT_TRUE(h.WaitStarted(2));
  h.Complete(2);
  EXPECT_EQ(h.s().GetKeyStats("a").total_queued_time, absl::Seconds(7));
}

// Many threads submit, re-key, change limits, cancel and complete at
// random. Checks: no key ever over its limit (limits only rise here, so
// the check is exact), every task ran or was dropped exactly once. Run
// under ThreadSanitizer by scripts/test.sh.
TEST(SchedulerStressTest, RandomConcurrentUse) {
  constexpr int kKeys = 8, kTasksPerThread = 1500, kSubmitters = 3;
  constexpr int kTasks = kTasksPerThread * kSubmitters;
  std::vector<std::atomic<int>> in_flight(kKeys), limit(kKeys);
  // In flight without waits_at_key; even keys take `ahead` = their limit.
  std::vector<std::atomic<int>> strict(kKeys);
  std::vector<std::atomic<int>> ran(kTasks), dropped(kTasks);
  std::atomic<bool> violated{false}, went_ahead_beside_strict{false};
  std::atomic<int> ahead_seen{0};
  // Bodies count themselves in and completers out under count_mu, so each
  // check sees one consistent moment.
  std::mutex count_mu;
  std::mutex limit_mu;
  std::mutex mu;
  std::vector<std::pair<bool, SlotToken>> held;  // (waits_at_key, token)
  std::atomic<int> settled{0};
  std::atomic<bool> stop{false};
  Scheduler s(Opts(3, 1));  // after the state its tasks use
  for (int k = 0; k < kKeys; ++k) {
    limit[k] = 1 + k % 3;
    s.SetLimit(std::to_string(k), limit[k], k % 2 == 0 ? limit[k].load() : 0);
  }
  std::vector<std::thread> threads;
  for (int c = 0; c < 2; ++c) {
    threads.emplace_back([&, c] {  // completers
      std::mt19937 rng(c);
      while (!stop) {
        SlotToken tok;
        bool waits = false;
        {
          std::lock_guard<std::mutex> l(mu);
          if (!held.empty()) {
            size_t i = rng() % held.size();
            waits = held[i].first;
            tok = std::move(held[i].second);
            held.erase(held.begin() + i);
          }
        }
        if (!tok.held()) {
          std::this_thread::yield();
          continue;
        }
        {
          std::lock_guard<std::mutex> l(count_mu);
          if (!waits) --strict[std::stoi(tok.key())];
          --in_flight[std::stoi(tok.key())];
        }
        if (rng() % 2 == 0) {
          tok.Release();
        } else {
          tok.ReleaseAndRun();  // the next task's body may run right here
        }
        ++settled;
      }
    });
  }
  for (int t = 0; t < kSubmitters; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(100 + t);
      for (int i = 0; i < kTasksPerThread; ++i) {
        int tag = t * kTasksPerThread + i;
        int k = rng() % kKeys;
        TaskOptions o;
        o.key = std::to_string(k);
        o.job = 1 + rng() % 4;
        o.weight = rng() % 100;
        const bool waits = rng() % 4 != 0;
        o.waits_at_key = waits;
        o.on_cancel = [&, tag](bool running) {
          if (!running) {
            ++dropped[tag];
            ++settled;
          }
        };
        uint64_t id = s.Submit(std::move(o), [&, tag, waits](SlotToken tok) {
          int key = std::stoi(tok.key());
          {
            // The tasks counted here are a subset of those the scheduler
            // has in flight (counted in after admission, out before
            // release), and the limits only grow, so these checks are
            // sound.
            std::lock_guard<std::mutex> l(count_mu);
            if (!waits) ++strict[key];
            const int n = ++in_flight[key];
            const int lim = limit[key];
            if (n > lim + (key % 2 == 0 ? lim : 0)) violated = true;
            if (n > lim) {
              ++ahead_seen;
              if (strict[key] > 0) went_ahead_beside_strict = true;
            }
          }
          ++ran[tag];
          std::lock_guard<std::mutex> l(mu);
          held.emplace_back(waits, std::move(tok));
        });
        if (id != 0 && rng() % 10 == 0) {  // leader moved
          int to = rng() % kKeys;
          s.Rekey(id, std::to_string(k), std::to_string(to)).IgnoreError();
        }
        if (rng() % 300 == 0) {
          int kk = rng() % kKeys;
          // One raise at a time, so the scheduler's limits only grow too.
          std::lock_guard<std::mutex> l(limit_mu);
          int nl = ++limit[kk];
          s.SetLimit(std::to_string(kk), nl, kk % 2 == 0 ? nl : 0);
        }
        if (i == kTasksPerThread / 2 && t == 0) s.CancelJob(4);
      }
    });
  }
  for (int t = 2; t < 2 + kSubmitters; ++t) threads[t].join();
  // Bounded wait for every task to settle (run+released, or dropped).
  for (int spins = 0; settled.load() < kTasks && spins < 2'000'000; ++spins) {
    std::this_thread::yield();
  }
  stop = true;
  threads[0].join();
  threads[1].join();
  EXPECT_EQ(settled.load(), kTasks);
  EXPECT_FALSE(violated.load());
  EXPECT_FALSE(went_ahead_beside_strict.load());
  RecordProperty("ahead_seen", ahead_seen.load());
  for (int i = 0; i < kTasks; ++i) {
    ASSERT_EQ(ran[i].load() + dropped[i].load(), 1) << "task " << i;
  }
  auto st = s.GetStats();
  EXPECT_EQ(st.executed + st.dropped, st.submitted);
  s.Shutdown();
  held.clear();  // on failure, tokens still held go back before `s` dies
}

}  // namespace
}  // namespace shutter::scheduler
