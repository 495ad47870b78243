// Foreground impact of a cluster snapshot, on a real local cluster (a
// controller and node processes on loopback, real RocksDB, real fsync).
//
// A steady foreground load of synced single-key writes through the data
// plane runs open-loop at a fixed rate (a fraction of what the cluster
// sustains, measured first); latency is measured from each write's
// scheduled time, so a stalled write also charges the writes queued behind
// it. Before every snapshot each partition gets fresh unflushed data, so
// every checkpoint flushes a memtable and publishes new files.
//
// Side by side, per run:
//   unconstrained  snapshot with no foreground load, fixed limits
//                  (--adaptive-limits=false), normal I/O class: the
//                  snapshot's own duration
//   idle           the foreground load alone: p50 / p99
//   fixed          snapshot during the load, fixed limits, normal I/O
//                  class, no bandwidth cap
//   adaptive       snapshot during the load with adaptive limits and
//                  isolation on (--snapshot-io-class, bandwidth cap)
// Targets (issue 11): p99 during the adaptive snapshot <= 1.25 x idle p99;
// its duration <= 2 x the unconstrained one.
//
// Usage: foreground_bench [--nodes 2] [--partitions-per-node 8]
//          [--capacity 4] [--fresh-mib 32] [--writers 64]
//          [--calibration-writers 8] [--stream-mibps 0] [--repository DIR]
//          [--latency-tolerance X]
//          [--load-fraction 0.7] [--idle-s 8] [--warmup-s 4]
//          [--heartbeat-ms 1000] [--io-class best-effort-low] [--nice 10]
//          [--bandwidth-mibps 0] [--pin] [--queue-at-nodes true]
//          [--sync true]
//          [--runs 3] [--smoke]
// --pin: the daemons on CPU 0, the load generator's writers on CPU 1 (the
// issue 21 lever: the figure about the cluster, not about a generator that
// competes with it for the same cores).
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench_flags.h"
#include "common/rpc.h"
#include "proc_stats.h"
#include "shutter/v1/admin.grpc.pb.h"
#include "shutter/v1/partition_data.grpc.pb.h"
#include "testing/binaries.h"
#include "testing/local_cluster.h"
#include "testing/temp_dir.h"

namespace {

using namespace shutter::v1;  // NOLINT

struct Config {
  int nodes = 2;
  int partitions_per_node = 8;
  int capacity = 4;
  int fresh_mib = 32;  // per partition, before each snapshot
  // Closed-loop writers that measure what the cluster sustains, and the
  // open-loop writers of the steady load (many, each mostly idle, so a
  // slow write does not hold back the ones scheduled after it: arrivals do
  // not wait for completions, as with independent clients).
  int calibration_writers = 8;
  int writers = 64;
  double load_fraction = 0.7;
  double idle_s = 8;
  double warmup_s = 4;
  int heartbeat_ms = 1000;
  std::string io_class = "best-effort-low";
  int nice = 10;
  double bandwidth_mibps = 0;
  // Per-stream publish cap in every case (models an object store's
  // per-connection bandwidth). 0 = none: publishing to the local
  // repository as fast as the disk goes, the hardest case for the
  // foreground.
  double stream_mibps = 0;
  int runs = 3;
  // Controller --adaptive-latency-tolerance in the adaptive case; 0 = the
  // controller's default.
  double latency_tolerance = 0;
  // Repository directory (default: inside the cluster's directory, on the
  // same disk as the partitions).
  std::string repository;
  // The daemons on CPU 0 (this process's main thread, which starts them,
  // and so every process it forks), the writers on CPU 1.
  bool pin = false;
  // The controller's --queue-at-nodes (a second round sent ahead).
  bool queue_at_nodes = true;
  // The foreground's writes wait for their WAL's fdatasync (false: they
  // are acknowledged from the page cache, as unsynced RocksDB writes).
  bool sync = true;
};

// Pins the calling thread (and what it starts from now on) to `cpu`.
void PinThisThread(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (::sched_setaffinity(0, sizeof(set), &set) != 0) {
    std::fprintf(stderr, "foreground_bench: sched_setaffinity(%d): %s\n", cpu,
                 std::strerror(errno));
    std::exit(1);
  }
}

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "foreground_bench: %s\n", msg.c_str());
  std::exit(1);
}

void Check(const absl::Status& s) {
  if (!s.ok()) Die(s.ToString());
}

struct Sample {
  absl::Time scheduled;
  double micros;          // from the scheduled time
  double service_micros;  // from the moment it was sent
};

// Open-loop synced writers. Rate 0 = closed loop (as fast as they go).
class Foreground {
 public:
  // `cpu` >= 0: the writers run on that CPU only. `sync`: each write
  // waits for its WAL to be on disk.
  Foreground(shutter::testing::LocalCluster* c, int writers, double rate,
             int cpu, bool sync)
      : c_(c), writers_(writers), rate_(rate), cpu_(cpu), sync_(sync) {}

  void Start() {
    stop_ = false;
    samples_.assign(writers_, {});
    errors_ = 0;
    const absl::Time start = absl::Now() + absl::Milliseconds(50);
    for (int w = 0; w < writers_; ++w) {
      threads_.emplace_back([this, w, start] { Run(w, start); });
    }
  }

  // Stops and returns every sample.
  std::vector<Sample> Stop() {
    stop_ = true;
    for (auto& t : threads_) t.join();
    threads_.clear();
    std::vector<Sample> all;
    for (auto& v : samples_) all.insert(all.end(), v.begin(), v.end());
    if (errors_ > 0)
      std::printf("  (%d foreground writes failed)\n", errors_.load());
    return all;
  }

 private:
  void Run(int w, absl::Time start) {
    if (cpu_ >= 0) PinThisThread(cpu_);
    // The writers are the load generator, not the system under test: on a
    // machine shared with the daemons they must not be the ones starved
    // of CPU (their lateness would be charged to the nodes). Needs
    // CAP_SYS_NICE; without it they run at normal priority.
    if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)),
                      -10) != 0 &&
        w == 0) {
      std::printf("  (writers could not raise their priority: %s)\n",
                  std::strerror(errno));
    }
    std::vector<std::unique_ptr<PartitionData::Stub>> stubs;
    for (int n = 0; n < c_->options().nodes; ++n) {
      stubs.push_back(
          PartitionData::NewStub(shutter::MakeChannel(c_->node_address(n))));
    }
    std::mt19937_64 rng(1000 + w);
    const int parts = c_->partitions();
    const absl::Duration period =
        rate_ > 0 ? absl::Seconds(writers_ / rate_) : absl::ZeroDuration();
    absl::Time next = start + period * w / writers_;
    uint64_t seq = 0;
    while (!stop_) {
      if (rate_ > 0) {
        const absl::Time now = absl::Now();
        if (next > now) absl::SleepFor(next - now);
      } else {
        next = absl::Now();
      }
      const int p = static_cast<int>(rng() % parts);
      WriteRequest req;
      req.set_partition_id(p);
      req.set_sync(sync_);
      auto* put = req.add_mutations()->mutable_put();
      put->set_key(absl::StrFormat("fg-%02d-%010d", w, seq++));
      put->set_value(shutter::testing::LocalCluster::RandomValue(rng, 128));
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
      WriteResponse resp;
      const absl::Time sent = absl::Now();
      grpc::Status s =
          stubs[p / c_->options().partitions_per_node]->Write(&ctx, req, &resp);
      const absl::Time done = absl::Now();
      if (!s.ok()) {
        ++errors_;
      } else {
        samples_[w].push_back({next, absl::ToDoubleMicroseconds(done - next),
                               absl::ToDoubleMicroseconds(done - sent)});
      }
      next += period;
    }
  }

  shutter::testing::LocalCluster* const c_;
  const int writers_;
  const double rate_;
  const int cpu_;
  const bool sync_;
  std::atomic<bool> stop_{false};
  std::atomic<int> errors_{0};
  std::vector<std::vector<Sample>> samples_;
  std::vector<std::thread> threads_;
};

struct Stats {
  size_t n = 0;
  double p50 = 0, p99 = 0, max = 0;
  double service_p99 = 0;  // without the time spent waiting to be sent
};

Stats Summarize(const std::vector<Sample>& all, absl::Time from,
                absl::Time to) {
  std::vector<double> v, service;
  for (const Sample& s : all) {
    if (s.scheduled >= from && s.scheduled < to) {
      v.push_back(s.micros);
      service.push_back(s.service_micros);
    }
  }
  Stats st;
  st.n = v.size();
  if (v.empty()) return st;
  std::sort(service.begin(), service.end());
  st.service_p99 =
      service[std::min(service.size() - 1,
                       static_cast<size_t>(0.99 * service.size()))] /
      1000.0;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    size_t i = static_cast<size_t>(q * v.size());
    return v[std::min(i, v.size() - 1)] / 1000.0;
  };
  st.p50 = at(0.5);
  st.p99 = at(0.99);
  st.max = v.back() / 1000.0;
  return st;
}

// Writes fresh_mib of new data to every partition (unsynced; it stays in
// the memtables, so the next checkpoint flushes it).
void Freshen(shutter::testing::LocalCluster& c, int fresh_mib, int round) {
  const int value = 4096;
  const int keys = fresh_mib * 1024 * 1024 / value;
  std::vector<std::thread> threads;
  std::atomic<int> next{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int p = next++; p < c.partitions(); p = next++) {
        std::mt19937_64 rng(round * 7919 + p);
        for (int k = 0; k < keys; k += 64) {
          std::vector<std::pair<std::string, std::string>> kvs;
          for (int j = k; j < std::min(keys, k + 64); ++j) {
            kvs.emplace_back(
                absl::StrFormat("bulk-%03d-%08d", round, j),
                shutter::testing::LocalCluster::RandomValue(rng, value));
          }
          Check(c.Write(p, kvs));
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  // Write back what the load left dirty (its WAL), so that writeback does
  // not land in the next measurement.
  ::sync();
}

// What the cluster's processes and its disk did over a window of a case:
// the resources a snapshot and the foreground compete for.
struct Usage {
  double seconds = 0;
  // CPU-seconds of the nodes' checkpoint threads ("checkpoint-N": the
  // checkpoint, hashing, copying) and RocksDB's background threads
  // ("rocksdb:*": the checkpoint's flush; the load fills no memtable).
  double snapshot_cpu = 0;
  double other_cpu = 0;  // the nodes' other threads: serving the load
  double controller_cpu = 0;
  double disk_busy_s = 0;  // with I/O in flight
  double disk_mib = 0;     // written
};

// Reads Usage from its construction to each Read().
class UsageMeter {
 public:
  UsageMeter(shutter::testing::LocalCluster& c, std::string dir)
      : dir_(std::move(dir)),
        start_(absl::Now()),
        disk_(shutter::bench::DiskCountersFor(dir_)),
        controller_{c.controller_pid(),
                    shutter::bench::ThreadCpuNanos(c.controller_pid())} {
    for (int i = 0; i < c.options().nodes; ++i) {
      nodes_.push_back(
          {c.node_pid(i), shutter::bench::ThreadCpuNanos(c.node_pid(i))});
    }
  }

  Usage Read() const {
    Usage u;
    u.seconds = absl::ToDoubleSeconds(absl::Now() - start_);
    for (const Proc& n : nodes_) {
      for (const auto& [tid, ns] :
           shutter::bench::ThreadCpuNanosSince(n.pid, n.ns)) {
        const std::string name = shutter::bench::ThreadName(n.pid, tid);
        const bool snapshot = absl::StartsWith(name, "checkpoint") ||
                              absl::StartsWith(name, "rocksdb:");
        (snapshot ? u.snapshot_cpu : u.other_cpu) += ns / 1e9;
      }
    }
    for (const auto& [tid, ns] :
         shutter::bench::ThreadCpuNanosSince(controller_.pid, controller_.ns)) {
      u.controller_cpu += ns / 1e9;
    }
    const shutter::bench::DiskCounters d =
        shutter::bench::DiskCountersFor(dir_);
    if (d.found && disk_.found) {
      u.disk_busy_s = (d.busy_ms - disk_.busy_ms) / 1e3;
      u.disk_mib =
          (d.sectors_written - disk_.sectors_written) * 512.0 / (1024 * 1024);
    }
    return u;
  }

 private:
  struct Proc {
    pid_t pid;
    std::map<int, int64_t> ns;  // CPU ns by thread at the start
  };

  const std::string dir_;
  const absl::Time start_;
  const shutter::bench::DiskCounters disk_;
  const Proc controller_;
  std::vector<Proc> nodes_;
};

// What the nodes count, summed over them (GetNodeStats).
struct NodeTotals {
  uint64_t stalls = 0;  // RocksDB write stalls
  int64_t stall_micros = 0;
  uint64_t published = 0;     // checkpoints newly written
  int64_t checkpoint_ms = 0;  // their time in the checkpoint phase
  int64_t publish_ms = 0;     // and in the publish phase
};

NodeTotals Totals(shutter::testing::LocalCluster& c) {
  NodeTotals t;
  for (int i = 0; i < c.options().nodes; ++i) {
    auto st = c.NodeStats(i);
    Check(st.status());
    t.stalls += st->write_stalls();
    t.stall_micros += st->write_stall_micros();
    t.published += st->checkpoints_published();
    t.checkpoint_ms += st->checkpoint_phase_millis();
    t.publish_ms += st->publish_phase_millis();
  }
  return t;
}

struct SnapshotRun {
  absl::Time start, end;
  double seconds = 0;
  // RocksDB write stalls on all nodes while it ran.
  uint64_t stalls = 0;
  double stalled_ms = 0;
  // Per checkpoint, on average: its RocksDB checkpoint (the flush, the
  // links) and its publish (hashing, copying, syncing).
  double checkpoint_ms = 0;
  double publish_ms = 0;
};

SnapshotRun RunSnapshot(shutter::testing::LocalCluster& c) {
  SnapshotRun r;
  const NodeTotals before = Totals(c);
  r.start = absl::Now();
  auto id = c.CreateSnapshot();
  Check(id.status());
  auto snap = c.WaitForSnapshot(*id, absl::Minutes(30));
  Check(snap.status());
  if (snap->state() != SNAPSHOT_STATE_COMMITTED) {
    Die("snapshot did not commit: " + snap->error());
  }
  r.end = absl::Now();
  r.seconds = (snap->finished_at_micros() - snap->created_at_micros()) / 1e6;
  const NodeTotals after = Totals(c);
  r.stalls = after.stalls - before.stalls;
  r.stalled_ms = (after.stall_micros - before.stall_micros) / 1e3;
  if (const uint64_t n = after.published - before.published; n > 0) {
    r.checkpoint_ms =
        static_cast<double>(after.checkpoint_ms - before.checkpoint_ms) / n;
    r.publish_ms =
        static_cast<double>(after.publish_ms - before.publish_ms) / n;
  }
  if (getenv("FOREGROUND_BENCH_TASKS") != nullptr) {
    for (const auto& t : snap->partitions()) {
      std::printf("  task p%u on %s: start +%.2f s, %.2f s\n", t.partition_id(),
                  t.node_id().c_str(),
                  (t.started_at_micros() - snap->created_at_micros()) / 1e6,
                  t.duration_millis() / 1e3);
    }
  }
  return r;
}

// Prints each node's limit and its reason.
void ShowLimits(shutter::testing::LocalCluster& c, const char* when) {
  ListNodesResponse resp;
  grpc::ClientContext ctx;
  if (!c.admin()->ListNodes(&ctx, ListNodesRequest(), &resp).ok()) return;
  for (const auto& n : resp.nodes()) {
    std::printf("  %s %s: limit %u/%u (%s)\n", when, n.node_id().c_str(),
                n.effective_limit(), n.checkpoint_capacity(),
                n.limit_reason().c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  bool smoke = false;
  CLI::App app{"Foreground write latency during a snapshot",
               "foreground_bench"};
  app.add_option("--nodes", cfg.nodes)->capture_default_str();
  app.add_option("--partitions-per-node", cfg.partitions_per_node)
      ->capture_default_str();
  app.add_option("--capacity", cfg.capacity)->capture_default_str();
  app.add_option("--fresh-mib", cfg.fresh_mib,
                 "Per partition, written before each snapshot")
      ->capture_default_str();
  app.add_option("--writers", cfg.writers, "Open-loop writers of the load")
      ->capture_default_str();
  app.add_option("--calibration-writers", cfg.calibration_writers,
                 "Closed-loop writers measuring what the cluster sustains")
      ->capture_default_str();
  app.add_option("--load-fraction", cfg.load_fraction, "Of the sustained rate")
      ->capture_default_str();
  app.add_option("--idle-s", cfg.idle_s)->capture_default_str();
  app.add_option("--warmup-s", cfg.warmup_s)->capture_default_str();
  app.add_option("--heartbeat-ms", cfg.heartbeat_ms)->capture_default_str();
  app.add_option("--io-class", cfg.io_class)->capture_default_str();
  app.add_option("--nice", cfg.nice)->capture_default_str();
  app.add_option("--stream-mibps", cfg.stream_mibps, "0 = none")
      ->capture_default_str();
  app.add_option("--bandwidth-mibps", cfg.bandwidth_mibps, "0 = none")
      ->capture_default_str();
  app.add_option("--repository", cfg.repository,
                 "Directory (default: inside the cluster's)");
  app.add_option("--latency-tolerance", cfg.latency_tolerance,
                 "0 = the controller's default")
      ->capture_default_str();
  app.add_option("--runs", cfg.runs)->capture_default_str();
  app.add_flag("--pin", cfg.pin,
               "Daemons on CPU 0, the load generator's writers on CPU 1");
  app.add_option("--sync", cfg.sync,
                 "The load's writes wait for their WAL's fdatasync (false: "
                 "unsynced writes, to tell the disk's flushes from the rest)")
      ->capture_default_str();
  app.add_option("--queue-at-nodes", cfg.queue_at_nodes,
                 "The controller sends nodes a second round ahead")
      ->capture_default_str();
  shutter::bench::SmokeFlag(app, &smoke, [&](const auto& given) {
    if (!given("--nodes")) cfg.nodes = 1;
    if (!given("--partitions-per-node")) cfg.partitions_per_node = 2;
    if (!given("--capacity")) cfg.capacity = 2;
    if (!given("--fresh-mib")) cfg.fresh_mib = 1;
    if (!given("--writers")) cfg.writers = 4;
    if (!given("--calibration-writers")) cfg.calibration_writers = 2;
    if (!given("--idle-s")) cfg.idle_s = 1;
    if (!given("--warmup-s")) cfg.warmup_s = 0.5;
    if (!given("--runs")) cfg.runs = 1;
  });
  shutter::bench::ParseFlags(app, argc, argv);
  if (cfg.pin) {
    if (std::thread::hardware_concurrency() < 2) Die("--pin needs 2 CPUs");
    PinThisThread(0);  // before any daemon is started
  }
  const int writer_cpu = cfg.pin ? 1 : -1;
  std::vector<std::string> fixed_nodes = {"--snapshot-io-class", "normal",
                                          "--snapshot-nice", "0"};
  std::vector<std::string> isolated_nodes = {"--snapshot-io-class",
                                             cfg.io_class, "--snapshot-nice",
                                             absl::StrCat(cfg.nice)};
  if (cfg.stream_mibps > 0) {
    for (auto* v : {&fixed_nodes, &isolated_nodes}) {
      v->push_back("--publish-stream-mibps");
      v->push_back(absl::StrCat(cfg.stream_mibps));
    }
  }
  if (cfg.bandwidth_mibps > 0) {
    isolated_nodes.push_back("--publish-bandwidth-mibps");
    isolated_nodes.push_back(absl::StrCat(cfg.bandwidth_mibps));
  }

  // Every case runs on a cluster of its own, built the same way (same base
  // data, same fresh data), so each snapshot has the same work to do.
  struct Case {
    shutter::testing::TempDir dir;
    std::unique_ptr<shutter::testing::LocalCluster> c;
  };
  auto fresh = [&](bool adaptive, const std::vector<std::string>& nflags) {
    auto k = std::make_unique<Case>();
    k->c = std::make_unique<shutter::testing::LocalCluster>(
        shutter::testing::LocalCluster::Options{
            SHUTTER_CONTROLLER_BIN, SHUTTER_NODE_BIN, k->dir.path(), cfg.nodes,
            cfg.partitions_per_node, cfg.capacity, cfg.heartbeat_ms,
            /*dead_after_ms=*/10000, /*log_level=*/"warn"});
    shutter::testing::LocalCluster& c = *k->c;
    if (!cfg.repository.empty()) {
      // A repository of this case's own below the given directory.
      c.SetRepository(
          absl::StrCat(
              cfg.repository, "/",
              std::filesystem::path(k->dir.path()).filename().string()),
          {}, {});
    }
    std::vector<std::string> cflags = {
        "--adaptive-limits", adaptive ? "true" : "false", "--queue-at-nodes",
        cfg.queue_at_nodes ? "true" : "false"};
    if (adaptive && cfg.latency_tolerance > 0) {
      cflags.push_back("--adaptive-latency-tolerance");
      cflags.push_back(absl::StrCat(cfg.latency_tolerance));
    }
    Check(c.StartController(cflags));
    Check(c.StartAllNodes(nflags));
    Check(c.WaitForLeaders(absl::Seconds(60)));
    Check(c.LoadRandom(smoke ? 64 : 2048, 1024, 256));
    return k;
  };
  auto stop = [](Case& k) {
    k.c->CloseChannels();
    k.c->StopAllNodes();
    k.c->StopController(SIGTERM).IgnoreError();
  };

  // What the cluster sustains: closed-loop synced writers.
  double sustained = 0;
  {
    auto k = fresh(false, fixed_nodes);
    Foreground fg(k->c.get(), cfg.calibration_writers, 0, writer_cpu, cfg.sync);
    fg.Start();
    absl::SleepFor(absl::Seconds(smoke ? 1 : 3));
    const absl::Time to = absl::Now();
    auto all = fg.Stop();
    const absl::Time from = to - absl::Seconds(smoke ? 0.7 : 2.5);
    sustained = Summarize(all, from, to).n / absl::ToDoubleSeconds(to - from);
    stop(*k);
  }
  const double rate = cfg.load_fraction * sustained;
  const std::string cap =
      cfg.bandwidth_mibps > 0
          ? absl::StrFormat(", --publish-bandwidth-mibps %.0f",
                            cfg.bandwidth_mibps)
          : "";
  std::printf(
      "foreground impact: %d nodes x %d partitions, capacity %d, %d MiB of "
      "fresh data per partition before each snapshot; %d writers of %s "
      "single-key writes at %.0f/s (%.0f%% of the %.0f/s %d closed-loop "
      "writers sustained); publish streams capped at %.0f MiB/s; heartbeats "
      "every %d ms; isolation: --snapshot-io-class %s --snapshot-nice %d%s%s\n",
      cfg.nodes, cfg.partitions_per_node, cfg.capacity, cfg.fresh_mib,
      cfg.writers, cfg.sync ? "synced" : "unsynced", rate,
      cfg.load_fraction * 100, sustained, cfg.calibration_writers,
      cfg.stream_mibps, cfg.heartbeat_ms, cfg.io_class.c_str(), cfg.nice,
      cap.c_str(),
      cfg.pin ? "; daemons pinned to CPU 0, writers to CPU 1" : "");

  // Each case's snapshots, one per run.
  std::vector<SnapshotRun> u_runs, f_runs, a_runs;
  std::vector<Stats> idle_v, fixed_v, adaptive_v;
  // What each case's window cost the cluster's CPU and disk.
  std::vector<Usage> u_use, idle_use, f_use, a_use;
  for (int r = 0; r < cfg.runs; ++r) {
    // Unconstrained: fixed limits, normal I/O class, no foreground.
    {
      auto k = fresh(false, fixed_nodes);
      Freshen(*k->c, cfg.fresh_mib, 1);
      UsageMeter meter(*k->c, k->dir.path());
      SnapshotRun s = RunSnapshot(*k->c);
      u_use.push_back(meter.Read());
      u_runs.push_back(s);
      stop(*k);
    }
    // Idle, then fixed: the same configuration under the load.
    {
      auto k = fresh(false, fixed_nodes);
      Freshen(*k->c, cfg.fresh_mib, 1);
      Foreground fg(k->c.get(), cfg.writers, rate, writer_cpu, cfg.sync);
      fg.Start();
      absl::SleepFor(absl::Seconds(1));
      const absl::Time idle_from = absl::Now();
      UsageMeter idle_meter(*k->c, k->dir.path());
      absl::SleepFor(absl::Seconds(cfg.idle_s));
      idle_use.push_back(idle_meter.Read());
      const absl::Time idle_to = absl::Now();
      UsageMeter meter(*k->c, k->dir.path());
      SnapshotRun s = RunSnapshot(*k->c);
      f_use.push_back(meter.Read());
      auto all = fg.Stop();
      idle_v.push_back(Summarize(all, idle_from, idle_to));
      fixed_v.push_back(Summarize(all, s.start, s.end));
      f_runs.push_back(s);
      stop(*k);
    }
    // Adaptive limits + isolation, from a cold controller: it learns the
    // idle latency during the warm-up.
    {
      auto k = fresh(true, isolated_nodes);
      Freshen(*k->c, cfg.fresh_mib, 1);
      Foreground fg(k->c.get(), cfg.writers, rate, writer_cpu, cfg.sync);
      fg.Start();
      absl::SleepFor(absl::Seconds(1 + cfg.warmup_s));
      ShowLimits(*k->c, "before");
      UsageMeter meter(*k->c, k->dir.path());
      SnapshotRun s = RunSnapshot(*k->c);
      a_use.push_back(meter.Read());
      ShowLimits(*k->c, "after ");
      auto all = fg.Stop();
      adaptive_v.push_back(Summarize(all, s.start, s.end));
      a_runs.push_back(s);
      stop(*k);
    }
  }

  auto med = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  auto med_stat = [&](const std::vector<Stats>& v, double Stats::*f) {
    std::vector<double> x;
    for (const auto& s : v) x.push_back(s.*f);
    return med(x);
  };
  const double idle_p99 = med_stat(idle_v, &Stats::p99);
  // A field of a case's snapshots: its median over the runs.
  auto run_med = [&](const std::vector<SnapshotRun>& runs,
                     double SnapshotRun::*f) {
    std::vector<double> x;
    for (const auto& r : runs) x.push_back(r.*f);
    return med(x);
  };
  const double u = run_med(u_runs, &SnapshotRun::seconds);
  std::printf("%-14s %8s %9s %9s %9s %10s %10s %11s\n", "case", "writes",
              "p50 ms", "p99 ms", "max ms", "svc p99", "p99/idle",
              "snapshot s");
  auto row = [&](const char* name, const std::vector<Stats>& v,
                 const std::vector<SnapshotRun>* runs) {
    std::printf("%-14s %8zu %9.2f %9.2f %9.1f %10.2f %9.2fx", name, v.back().n,
                med_stat(v, &Stats::p50), med_stat(v, &Stats::p99),
                med_stat(v, &Stats::max), med_stat(v, &Stats::service_p99),
                med_stat(v, &Stats::p99) / idle_p99);
    if (runs != nullptr) {
      const double secs = run_med(*runs, &SnapshotRun::seconds);
      std::printf(" %10.2f (%.2fx unconstrained)", secs, secs / u);
    }
    std::printf("\n");
  };
  std::printf("%-14s %8s %9s %9s %9s %10s %10s %11.2f\n", "unconstrained", "-",
              "-", "-", "-", "-", "-", u);
  row("idle", idle_v, nullptr);
  row("fixed", fixed_v, &f_runs);
  row("adaptive", adaptive_v, &a_runs);
  // RocksDB write stalls during a case's snapshots, summed over the runs.
  auto stalls = [](const std::vector<SnapshotRun>& runs) {
    unsigned long long n = 0;
    double ms = 0;
    for (const auto& r : runs) {
      n += r.stalls;
      ms += r.stalled_ms;
    }
    return absl::StrFormat("%u (%.0f ms)", n, ms);
  };
  std::printf(
      "RocksDB write stalls during the snapshots (all runs): unconstrained "
      "%s, fixed %s, adaptive %s\n",
      stalls(u_runs).c_str(), stalls(f_runs).c_str(), stalls(a_runs).c_str());
  // Shares of one core and of the disk's time, medians over the runs.
  std::printf("%-14s %17s %17s %11s %10s %11s %14s %11s\n", "resources",
              "nodes: snapshot", "nodes: the rest", "controller", "disk busy",
              "disk MiB/s", "checkpoint ms", "publish ms");
  auto use_row = [&](const char* name, const std::vector<Usage>& v,
                     const std::vector<SnapshotRun>* runs) {
    auto per_s = [&](double Usage::*f) {
      std::vector<double> x;
      for (const auto& u : v) x.push_back(u.*f / u.seconds);
      return med(x);
    };
    std::printf("%-14s %16.0f%% %16.0f%% %10.0f%% %9.0f%% %11.1f", name,
                100 * per_s(&Usage::snapshot_cpu),
                100 * per_s(&Usage::other_cpu),
                100 * per_s(&Usage::controller_cpu),
                100 * per_s(&Usage::disk_busy_s), per_s(&Usage::disk_mib));
    if (runs != nullptr) {
      std::printf(" %14.0f %11.0f", run_med(*runs, &SnapshotRun::checkpoint_ms),
                  run_med(*runs, &SnapshotRun::publish_ms));
    } else {
      std::printf(" %14s %11s", "-", "-");
    }
    std::printf("\n");
  };
  use_row("unconstrained", u_use, &u_runs);
  use_row("idle", idle_use, nullptr);
  use_row("fixed", f_use, &f_runs);
  use_row("adaptive", a_use, &a_runs);
  std::printf(
      "(CPU in %% of one core: the nodes' checkpoint and RocksDB background "
      "threads, their other threads, the controller; the disk that holds "
      "the cluster%s; a checkpoint's two phases, its average)\n",
      cfg.repository.empty() ? " and its repository" : "");
  const double a_ratio = med_stat(adaptive_v, &Stats::p99) / idle_p99;
  const double a_dur = run_med(a_runs, &SnapshotRun::seconds) / u;
  std::printf(
      "targets: adaptive p99 <= 1.25x idle: %.2fx %s; adaptive snapshot <= "
      "2x unconstrained: %.2fx %s\n",
      a_ratio, a_ratio <= 1.25 ? "met" : "NOT met", a_dur,
      a_dur <= 2.0 ? "met" : "NOT met");
  return 0;
}
