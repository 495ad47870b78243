// Makespan quality in virtual time (no sleeping): 10,000 partitions on
// 1,000 nodes with heavy-tailed (Pareto) sizes and per-node limits of 1-4.
// Compares FIFO and LPT list scheduling with the real Scheduler driven by a
// virtual clock, against the lower bound
//   max over nodes of max(sum of durations / limit, longest task).
//
// Usage: makespan_sim_bench [--partitions N] [--nodes M] [--seed S] [--smoke]
#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "bench_flags.h"
#include "scheduler/scheduler.h"

namespace {

struct Part {
  int node;
  double seconds;   // true duration
  double estimate;  // what the scheduler is told (size-based)
};

struct Cluster {
  std::vector<int> limit;               // per node
  std::vector<std::vector<int>> parts;  // per node: partition indices
  std::vector<Part> p;
};

Cluster Make(int partitions, int nodes, uint64_t seed, double noise) {
  std::mt19937_64 rng(seed);
  Cluster c;
  std::uniform_int_distribution<int> lim(1, 4), node(0, nodes - 1);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::lognormal_distribution<double> err(0.0, noise);
  c.limit.resize(nodes);
  for (int& l : c.limit) l = lim(rng);
  c.parts.resize(nodes);
  for (int i = 0; i < partitions; ++i) {
    // Pareto(alpha 1.5, min 64 MiB) sizes, capped at 4 GiB (services split
    // partitions that grow past that); a checkpoint costs 0.2 s plus the
    // copy at 200 MiB/s.
    double mib = std::min(64.0 / std::pow(1.0 - u(rng), 1.0 / 1.5), 4096.0);
    double secs = 0.2 + mib / 200.0;
    int n = node(rng);
    c.p.push_back({n, secs, noise > 0 ? secs * err(rng) : secs});
    c.parts[n].push_back(i);
  }
  return c;
}

// Per node: max(sum / limit, longest).
std::vector<double> NodeBounds(const Cluster& c) {
  std::vector<double> out(c.parts.size(), 0.0);
  for (size_t n = 0; n < c.parts.size(); ++n) {
    double sum = 0, longest = 0;
    for (int i : c.parts[n]) {
      sum += c.p[i].seconds;
      longest = std::max(longest, c.p[i].seconds);
    }
    out[n] = std::max(sum / c.limit[n], longest);
  }
  return out;
}

// Mean over nodes of (node's finish / node's bound): how close each node's
// own schedule is to the best it could do.
double MeanNodeRatio(const std::vector<double>& finish,
                     const std::vector<double>& bound) {
  double sum = 0;
  int n = 0;
  for (size_t i = 0; i < finish.size(); ++i) {
    if (bound[i] <= 0) continue;
    sum += finish[i] / bound[i];
    ++n;
  }
  return n ? sum / n : 1.0;
}

// Greedy list scheduling per node in the given order: each task goes to the
// slot that frees first.
std::vector<double> ListSchedule(const Cluster& c, bool largest_first) {
  std::vector<double> finish(c.parts.size(), 0.0);
  for (size_t n = 0; n < c.parts.size(); ++n) {
    std::vector<int> order = c.parts[n];
    if (largest_first) {
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        return c.p[a].estimate > c.p[b].estimate;
      });
    }
    std::priority_queue<double, std::vector<double>, std::greater<double>>
        slots;
    for (int i = 0; i < c.limit[n]; ++i) slots.push(0.0);
    for (int i : order) {
      double start = slots.top();
      slots.pop();
      slots.push(start + c.p[i].seconds);
      finish[n] = std::max(finish[n], start + c.p[i].seconds);
    }
  }
  return finish;
}

// The real scheduler, in virtual time: bodies record their start and hand
// their token to the simulation, which releases tokens in order of finish.
std::vector<double> RunScheduler(const Cluster& c) {
  std::mutex mu;
  std::condition_variable cv;
  double now = 0;
  struct Running {
    double finish;
    int part;
    std::shared_ptr<shutter::scheduler::SlotToken> token;
    bool operator>(const Running& o) const { return finish > o.finish; }
  };
  std::priority_queue<Running, std::vector<Running>, std::greater<Running>>
      running;
  int64_t started = 0;

  shutter::scheduler::Scheduler::Options o;
  o.num_workers = 1;
  o.default_limit = 1;
  o.now = [&] {
    std::lock_guard<std::mutex> l(mu);
    return absl::FromUnixMicros(static_cast<int64_t>(now * 1e6));
  };
  shutter::scheduler::Scheduler s(o);
  std::vector<std::string> names(c.parts.size());
  for (size_t n = 0; n < names.size(); ++n) {
    names[n] = "node-" + std::to_string(n);
    s.SetLimit(names[n], c.limit[n]);
  }
  int64_t expected = 0;
  for (size_t n = 0; n < c.parts.size(); ++n) {
    expected += std::min<int64_t>(c.limit[n], c.parts[n].size());
  }
  // One job, submitted as the controller does: one batch.
  std::vector<
      std::pair<shutter::scheduler::TaskOptions, shutter::scheduler::TaskFn>>
      batch;
  for (size_t i = 0; i < c.p.size(); ++i) {
    shutter::scheduler::TaskOptions t;
    t.key = names[c.p[i].node];
    t.job = 1;
    // Weights are integers: microseconds of estimated work.
    t.weight = static_cast<int64_t>(c.p[i].estimate * 1e6);
    batch.emplace_back(std::move(t), [&, i](shutter::scheduler::SlotToken tok) {
      std::lock_guard<std::mutex> l(mu);
      running.push(
          {now + c.p[i].seconds, static_cast<int>(i),
           std::make_shared<shutter::scheduler::SlotToken>(std::move(tok))});
      ++started;
      cv.notify_all();
    });
  }
  s.SubmitBatch(std::move(batch));
  std::vector<double> finish(c.parts.size(), 0.0);
  for (size_t done = 0; done < c.p.size(); ++done) {
    Running r;
    {
      std::unique_lock<std::mutex> l(mu);
      // Every admitted task has run its body (the scheduler admits
      // synchronously; only the hand-off to the worker is asynchronous).
      cv.wait(l, [&] { return started >= expected; });
      r = running.top();
      running.pop();
      now = r.finish;
      int node = c.p[r.part].node;
      finish[node] = std::max(finish[node], now);
    }
    const std::string& key = names[c.p[r.part].node];
    bool more = s.GetKeyStats(key).queued > 0;
    r.token->Release();
    if (more) ++expected;
  }
  return finish;
}

}  // namespace

int main(int argc, char** argv) {
  int partitions = 10000, nodes = 1000;
  uint64_t seed = 42;
  bool smoke = false;
  CLI::App app{"Makespan of scheduling policies, simulated",
               "makespan_sim_bench"};
  app.add_option("--partitions", partitions)->capture_default_str();
  app.add_option("--nodes", nodes)->capture_default_str();
  app.add_option("--seed", seed)->capture_default_str();
  shutter::bench::SmokeFlag(app, &smoke, [&](const auto& given) {
    if (!given("--partitions")) partitions = 500;
    if (!given("--nodes")) nodes = 50;
  });
  shutter::bench::ParseFlags(app, argc, argv);
  std::printf(
      "makespan simulation: %d partitions on %d nodes, limits 1-4, Pareto "
      "sizes (alpha 1.5, 64 MiB-4 GiB), seed %llu\n",
      partitions, nodes, static_cast<unsigned long long>(seed));
  std::printf("%-34s %-14s %11s %9s %14s\n", "policy", "estimates",
              "makespan s", "vs bound", "mean node/LB");
  for (double noise : {0.0, 0.3}) {
    Cluster c = Make(partitions, nodes, seed, noise);
    std::vector<double> bounds = NodeBounds(c);
    double lb = *std::max_element(bounds.begin(), bounds.end());
    const char* est = noise > 0 ? "off by ~30%" : "exact";
    struct Row {
      const char* name;
      std::vector<double> finish;
    };
    Row rows[] = {{"FIFO (submission order)", ListSchedule(c, false)},
                  {"LPT (largest estimate first)", ListSchedule(c, true)},
                  {"ours: shutter Scheduler", RunScheduler(c)}};
    std::printf("%-34s %-14s %11.1f %8.3fx %14s\n", "lower bound", est, lb, 1.0,
                "1.000");
    for (const Row& r : rows) {
      double ms = *std::max_element(r.finish.begin(), r.finish.end());
      std::printf("%-34s %-14s %11.1f %8.3fx %14.3f\n", r.name, est, ms,
                  ms / lb, MeanNodeRatio(r.finish, bounds));
    }
  }
  return 0;
}
