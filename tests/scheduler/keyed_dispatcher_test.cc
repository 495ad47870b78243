#include "scheduler/keyed_dispatcher.h"

#include <atomic>
#include <random>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace shutter::scheduler {
namespace {

// Collects started tasks' tokens so the test decides when each completes.
class Harness {
 public:
  explicit Harness(KeyedDispatcher::Options o) : d_(o) {}

  void Submit(const std::string& key, int64_t weight, int id) {
    d_.Submit(key, weight, [this, key, id](SlotToken t) {
      absl::MutexLock l(&mu_);
      int& n = running_[key];
      ++n;
      peak_[key] = std::max(peak_[key], n);
      started_.push_back(id);
      tokens_.push_back({id, std::move(t)});
    });
  }

  bool WaitStarted(size_t n) {
    absl::MutexLock l(&mu_);
    auto cond = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return started_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&cond), absl::Seconds(10));
  }

  // Completes the started task `id`.
  void Complete(int id) {
    SlotToken t;
    {
      absl::MutexLock l(&mu_);
      for (auto it = tokens_.begin(); it != tokens_.end(); ++it) {
        if (it->first == id) {
          t = std::move(it->second);
          --running_[t.key()];
          tokens_.erase(it);
          break;
        }
      }
    }
    ASSERT_TRUE(t.held()) << "task " << id << " not running";
  }

  std::vector<int> started() {
    absl::MutexLock l(&mu_);
    return started_;
  }
  int peak(const std::string& k) {
    absl::MutexLock l(&mu_);
    return peak_[k];
  }
  KeyedDispatcher& d() { return d_; }

 private:
  absl::Mutex mu_;
  std::map<std::string, int> running_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> peak_ ABSL_GUARDED_BY(mu_);
  std::vector<int> started_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<int, SlotToken>> tokens_ ABSL_GUARDED_BY(mu_);
  KeyedDispatcher d_;  // last: destroyed first, while the rest still exists
};

TEST(KeyedDispatcherTest, NeverExceedsAKeysLimitAndDoesNotBlockOtherKeys) {
  Harness h({2, 1, 0});
  h.d().SetLimit("a", 2);
  for (int i = 0; i < 5; ++i) h.Submit("a", 0, i);
  h.Submit("b", 0, 100);  // must not wait behind a's queue
  ASSERT_TRUE(h.WaitStarted(3));
  auto s = h.d().GetKeyStats("a");
  EXPECT_EQ(s.in_flight, 2);
  EXPECT_EQ(s.queued, 3);
  EXPECT_EQ(h.d().GetKeyStats("b").in_flight, 1);
  h.Complete(0);
  ASSERT_TRUE(h.WaitStarted(4));
  h.Complete(1);
  h.Complete(2);
  ASSERT_TRUE(h.WaitStarted(6));
  h.Complete(3);
  h.Complete(4);
  h.Complete(100);
  EXPECT_EQ(h.peak("a"), 2);
  EXPECT_EQ(h.d().GetKeyStats("a").completed, 5u);
  EXPECT_EQ(h.d().GetKeyStats("a").peak_in_flight, 2);
}

TEST(KeyedDispatcherTest, LargestWeightFirstThenSubmissionOrder) {
  Harness h({1, 1, 0});
  h.d().SetLimit("a", 0);  // hold everything while queueing
  h.Submit("a", 10, 1);
  h.Submit("a", 50, 2);
  h.Submit("a", 10, 3);
  h.Submit("a", 99, 4);
  h.d().SetLimit("a", 1);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(h.WaitStarted(i + 1));
    h.Complete(h.started().back());
  }
  EXPECT_EQ(h.started(), (std::vector<int>{4, 2, 1, 3}));
}

TEST(KeyedDispatcherTest, LoweringAndRaisingLimitsWhileRunning) {
  Harness h({2, 3, 0});
  for (int i = 0; i < 6; ++i) h.Submit("a", 0, i);
  ASSERT_TRUE(h.WaitStarted(3));
  h.d().SetLimit("a", 1);  // drained down to 1
  h.Complete(0);
  h.Complete(1);
  EXPECT_EQ(h.d().GetKeyStats("a").in_flight, 1);
  EXPECT_EQ(h.started().size(), 3u);  // nothing new: still at the new limit
  h.Complete(2);
  ASSERT_TRUE(h.WaitStarted(4));
  EXPECT_EQ(h.d().GetKeyStats("a").in_flight, 1);
  h.d().SetLimit("a", 5);
  ASSERT_TRUE(h.WaitStarted(6));
  EXPECT_EQ(h.d().GetKeyStats("a").in_flight, 3);
  for (int i = 3; i < 6; ++i) h.Complete(i);
}

TEST(KeyedDispatcherTest, GlobalLimitCapsAllKeys) {
  Harness h({2, 4, 1});
  h.Submit("a", 0, 1);
  h.Submit("b", 0, 2);
  ASSERT_TRUE(h.WaitStarted(1));
  EXPECT_EQ(h.started().size(), 1u);
  h.Complete(h.started()[0]);
  ASSERT_TRUE(h.WaitStarted(2));
  h.Complete(h.started()[1]);
}

TEST(KeyedDispatcherTest, DroppedTokenReturnsTheSlot) {
  KeyedDispatcher d({1, 1, 0});
  std::atomic<int> ran{0};
  absl::Mutex mu;
  int done = 0;
  for (int i = 0; i < 3; ++i) {
    // Each task drops its token at once (an error path).
    d.Submit("k", 0, [&](SlotToken) {
      ++ran;
      absl::MutexLock l(&mu);
      ++done;
    });
  }
  absl::MutexLock l(&mu);
  auto all = [&done]() { return done == 3; };
  ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(10)));
  EXPECT_EQ(ran.load(), 3);
}

TEST(KeyedDispatcherTest, ShutdownDropsPendingTasksUnrun) {
  Harness h({1, 1, 0});
  h.Submit("a", 0, 1);
  h.Submit("a", 0, 2);
  ASSERT_TRUE(h.WaitStarted(1));
  h.d().Shutdown();
  h.Complete(1);  // a token released after shutdown is fine
  EXPECT_EQ(h.started(), (std::vector<int>{1}));
  EXPECT_FALSE(h.d().Submit("a", 0, [](SlotToken) { FAIL(); }));
  EXPECT_EQ(h.d().GetKeyStats("a").in_flight, 0);
}

// Random limits and completions from many threads; every task runs exactly
// once and no key ever exceeds its limit. Run under ThreadSanitizer in CI.
TEST(KeyedDispatcherStressTest, RandomLimitsAndCompletions) {
  constexpr int kKeys = 8, kTasks = 4000;
  KeyedDispatcher d({4, 2, 0});
  std::vector<std::atomic<int>> in_flight(kKeys), limit(kKeys);
  std::vector<std::atomic<int>> runs(kTasks);
  std::atomic<bool> violated{false};
  for (int k = 0; k < kKeys; ++k) {
    limit[k] = 1 + k % 3;
    d.SetLimit(std::to_string(k), limit[k]);
  }
  absl::Mutex mu;
  std::vector<SlotToken> held;
  std::atomic<int> finished{0};
  std::vector<std::thread> completers;
  std::atomic<bool> stop{false};
  for (int t = 0; t < 3; ++t) {
    completers.emplace_back([&, t] {
      std::mt19937 rng(t);
      while (!stop) {
        SlotToken tok;
        {
          absl::MutexLock l(&mu);
          if (!held.empty()) {
            size_t i = rng() % held.size();
            tok = std::move(held[i]);
            held.erase(held.begin() + i);
          }
        }
        if (tok.held()) {
          --in_flight[std::stoi(tok.key())];
          tok.Release();
          ++finished;
        } else {
          std::this_thread::yield();
        }
      }
    });
  }
  std::mt19937 rng(42);
  for (int i = 0; i < kTasks; ++i) {
    int k = rng() % kKeys;
    if (i % 500 == 0) {
      // Limits only go up here so the in-flight check below stays exact.
      int kk = rng() % kKeys;
      limit[kk] = limit[kk] + 1;
      d.SetLimit(std::to_string(kk), limit[kk]);
    }
    d.Submit(std::to_string(k), rng() % 100, [&, i, k](SlotToken t) {
      if (++in_flight[k] > limit[k]) violated = true;
      ++runs[i];
      absl::MutexLock l(&mu);
      held.push_back(std::move(t));
    });
  }
  {
    absl::MutexLock l(&mu);
    auto all = [&]() { return finished.load() == kTasks; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(60)))
        << finished.load();
  }
  stop = true;
  for (auto& t : completers) t.join();
  EXPECT_FALSE(violated.load());
  for (int i = 0; i < kTasks; ++i) ASSERT_EQ(runs[i].load(), 1) << i;
}

}  // namespace
}  // namespace shutter::scheduler
