// Per-task overhead of the scheduler: submit -> run -> complete for no-op
// tasks, with and without per-key limits, next to a plain oneTBB
// task_group running the same no-op tasks, in one run.
//
// Usage: scheduler_overhead_bench [--tasks N] [--reps R] [--smoke]
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "bench_flags.h"
#include "oneapi/tbb/global_control.h"
#include "oneapi/tbb/task_group.h"
#include "scheduler/scheduler.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// Waits for `n` completions without sleeping on a timer.
class Latch {
 public:
  explicit Latch(int64_t n) : left_(n) {}
  void CountDown() {
    if (left_.fetch_sub(1) == 1) {
      std::lock_guard<std::mutex> l(mu_);
      cv_.notify_all();
    }
  }
  void Wait() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return left_.load() <= 0; });
  }

 private:
  std::atomic<int64_t> left_;
  std::mutex mu_;
  std::condition_variable cv_;
};

// Runs `tasks` no-op tasks spread over `keys` keys. limit <= 0: keys
// unlimited (a limit far above what can be in flight).
double RunOurs(int workers, int64_t tasks, int keys, int limit) {
  shutter::scheduler::Scheduler::Options o;
  o.num_workers = workers;
  o.default_limit = limit > 0 ? limit : 1 << 30;
  shutter::scheduler::Scheduler s(o);
  std::vector<std::string> names(keys);
  for (int k = 0; k < keys; ++k) names[k] = "node-" + std::to_string(k);
  Latch done(tasks);
  auto start = Clock::now();
  for (int64_t i = 0; i < tasks; ++i) {
    shutter::scheduler::TaskOptions t;
    t.key = names[i % keys];
    s.Submit(std::move(t),
             [&done](shutter::scheduler::SlotToken) { done.CountDown(); });
  }
  done.Wait();
  return Seconds(Clock::now() - start);
}

double RunTbb(int workers, int64_t tasks) {
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism,
                         workers + 1);
  std::atomic<int64_t> count{0};
  tbb::task_group tg;
  auto start = Clock::now();
  for (int64_t i = 0; i < tasks; ++i) {
    tg.run([&count] { count.fetch_add(1, std::memory_order_relaxed); });
  }
  tg.wait();
  double secs = Seconds(Clock::now() - start);
  if (count.load() != tasks) std::abort();
  return secs;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int64_t tasks = 1'000'000;
  int reps = 5;
  bool smoke = false;
  CLI::App app{"Scheduler overhead per task", "scheduler_overhead_bench"};
  app.add_option("--tasks", tasks)->capture_default_str();
  app.add_option("--reps", reps)->capture_default_str();
  shutter::bench::SmokeFlag(app, &smoke, [&](const auto& given) {
    if (!given("--tasks")) tasks = 20'000;
    if (!given("--reps")) reps = 1;
  });
  shutter::bench::ParseFlags(app, argc, argv);
  const int workers = 2;
  struct Case {
    const char* name;
    int keys;
    int limit;
  };
  const Case cases[] = {
      {"ours, 1 key, no limit", 1, 0},
      {"ours, 1 key, limit 4", 1, 4},
      {"ours, 100 keys, no limit", 100, 0},
      {"ours, 100 keys, limit 4", 100, 4},
      {"ours, 10000 keys, no limit", 10000, 0},
      {"ours, 10000 keys, limit 4", 10000, 4},
  };
  // Interleave the cases within each repetition so drift hits all alike.
  std::vector<std::vector<double>> ours(std::size(cases));
  std::vector<double> tbb_times;
  for (int r = 0; r < reps; ++r) {
    tbb_times.push_back(RunTbb(workers, tasks));
    for (size_t c = 0; c < std::size(cases); ++c) {
      ours[c].push_back(RunOurs(workers, tasks, cases[c].keys, cases[c].limit));
    }
  }
  const double tbb = Median(tbb_times);
  std::printf(
      "scheduler overhead: %lld no-op tasks, %d workers, median of %d\n",
      static_cast<long long>(tasks), workers, reps);
  std::printf("%-30s %12s %14s %12s\n", "case", "ns/task", "tasks/s",
              "vs oneTBB");
  std::printf("%-30s %12.1f %14.0f %12s\n", "oneTBB task_group",
              tbb / tasks * 1e9, tasks / tbb, "1.00x");
  for (size_t c = 0; c < std::size(cases); ++c) {
    double t = Median(ours[c]);
    std::printf("%-30s %12.1f %14.0f %11.2fx\n", cases[c].name, t / tasks * 1e9,
                tasks / t, t / tbb);
  }
  return 0;
}
