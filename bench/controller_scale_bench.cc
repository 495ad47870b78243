// The controller's own cost at scale: the real shutter-controller process
// against fake nodes that answer CreateCheckpoint at once (or after a set
// delay) over real gRPC, each with a minimal valid publication (a partition
// manifest in the repository, no data files). Every checkpoint is (nearly)
// free, so what is measured is the controller: create -> COMMITTED time,
// its CPU and RSS, bytes it writes, the peak of checkpoints in flight
// against the allowed total, and heartbeat latency while a snapshot runs.
//
// Fake nodes: one gRPC server in this process; node i is advertised as
// 127.0.<i/250>.<i%250+1>:<port>, so the controller opens one connection
// per node as it would in a real cluster. Heartbeats for all nodes are sent
// from this process at --heartbeat-ms.
//
// Scenarios (one line each, then ratios):
//   S1  100 nodes x 10 partitions, capacity 4, instant
//   S2  1,000 nodes x 10, capacity 4, instant
//   S2L S2 again with `partitions list` called in a loop meanwhile
//       (heartbeat latency under that load)
//   S3  100 nodes x 16, capacity 4, 200 ms checkpoints (ideal 0.8 s)
//   S3b as S3 with 50 ms checkpoints
//   S3c as S3 with capacity 16 (one round of 1,600 at once)
//   S3d as S3 with capacity 1 (16 rounds of 100)
//   R   S1 50 times, then the controller restarted: its start time with 50
//       finished 1,000-partition jobs in the job store
//   S4  10,000 nodes x 10 (100,000 partitions), with --huge
// --smoke runs small versions of S1 and S3 (CI).
//
// Usage: controller_scale_bench [--smoke] [--huge] [--only S2]
//          [--controller-bin PATH]   (default: the one built with it)
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench_flags.h"
#include "common/fs.h"
#include "common/rpc.h"
#include "common/timer.h"
#include "shutter/v1/admin.grpc.pb.h"
#include "shutter/v1/controller.grpc.pb.h"
#include "shutter/v1/node.grpc.pb.h"
#include "snapshot/manifest.h"
#include "snapshot/repository.h"
#include "testing/process.h"
#include "testing/temp_dir.h"

namespace {

using namespace shutter::v1;  // NOLINT
namespace stdfs = std::filesystem;

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "controller_scale_bench: %s\n", msg.c_str());
  std::exit(1);
}

struct Scenario {
  std::string name;
  int nodes = 0;
  int per_node = 0;
  int capacity = 4;
  int delay_ms = 0;
  // Also run `partitions list` in a loop while the snapshot runs.
  bool list_while_running = false;
  // Before the snapshot: measure the controller's CPU for this long with
  // only heartbeats going on (0: skip).
  int idle_seconds = 0;
  // After it: take this many more snapshots, then restart the controller
  // and time its start (recovery of every finished job) (0: skip).
  int more_jobs = 0;
};

struct Result {
  int partitions = 0;
  double create_rpc_ms = 0;
  double commit_s = 0;
  double cpu_s = 0;
  double rss_mib = 0;
  double write_bytes = 0;
  int peak_in_flight = 0;
  double hb_p50_ms = 0, hb_p99_ms = 0, hb_max_ms = 0;
  double idle_cpu_pct = -1;  // heartbeats only, % of one core
  int jobs = 1;
  double restart_s = -1;  // start -> serving with `jobs` finished jobs
  double store_mib = 0;   // job store size on disk then
  std::string state;
};

std::string NodeAddress(int i, int port) {
  return absl::StrFormat("127.0.%d.%d:%d", i / 250, i % 250 + 1, port);
}

// Fake nodes: answers every CreateCheckpoint with a minimal publication.
class FakeNodes final : public NodeService::CallbackService {
 public:
  FakeNodes(std::string repo, int per_node)
      : repo_(std::move(repo)), per_node_(per_node) {}

  void set_delay(absl::Duration d) { delay_ = d; }
  int peak() const { return peak_.load(); }
  void ResetPeak() { peak_ = 0; }
  void Shutdown() {
    for (auto& t : timers_) t.Shutdown();
  }

  grpc::ServerUnaryReactor* CreateCheckpoint(
      grpc::CallbackServerContext* ctx, const CreateCheckpointRequest* req,
      CreateCheckpointResponse* resp) override {
    int now = ++in_flight_;
    int peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    auto answer = [this, req, resp, reactor] {
      PartitionManifest m;
      m.set_format_version(1);
      m.set_snapshot_id(req->snapshot_id());
      m.set_partition_id(req->partition_id());
      m.set_node_id(absl::StrFormat("f%05d", req->partition_id() / per_node_));
      m.set_leader_epoch(req->expected_leader_epoch());
      m.set_applied_index(1);
      m.set_created_at_micros(absl::ToUnixMicros(absl::Now()));
      const std::string rel =
          shutter::snapshot::Repository::PartitionManifestPath(
              req->snapshot_id(), req->partition_id());
      const std::string path = repo_ + "/" + rel;
      std::error_code ec;
      stdfs::create_directories(stdfs::path(path).parent_path(), ec);
      // A fake: no fsync (the controller's own costs are measured).
      std::ofstream(path) << shutter::snapshot::EncodePartitionManifest(m);
      *resp->mutable_manifest() = m;
      resp->set_manifest_path(rel);
      --in_flight_;
      reactor->Finish(grpc::Status::OK);
    };
    if (delay_ <= absl::ZeroDuration()) {
      answer();
    } else {
      // Several timer threads: 400 "nodes" answering at once are not
      // serialized behind one thread of this process.
      timers_[next_timer_++ % timers_.size()].RunAfter(delay_, answer);
    }
    return reactor;
  }

 private:
  const std::string repo_;
  const int per_node_;
  absl::Duration delay_;
  std::array<shutter::ThreadTimer, 4> timers_;
  std::atomic<uint32_t> next_timer_{0};
  std::atomic<int> in_flight_{0};
  std::atomic<int> peak_{0};
};

// utime + stime of a process, seconds.
double ProcessCpuSeconds(pid_t pid) {
  auto stat = shutter::fs::ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat.ok()) return 0;
  // Fields after the ")" of the command name; utime and stime are 14, 15.
  std::string rest = stat->substr(stat->rfind(')') + 2);
  std::vector<std::string> f = absl::StrSplit(rest, ' ');
  if (f.size() < 13) return 0;
  return (std::stod(f[11]) + std::stod(f[12])) / sysconf(_SC_CLK_TCK);
}

double ProcessField(pid_t pid, const std::string& file,
                    const std::string& key) {
  auto text = shutter::fs::ReadFile(absl::StrCat("/proc/", pid, "/", file));
  if (!text.ok()) return 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (absl::StartsWith(line, key)) {
      std::string v(absl::StripAsciiWhitespace(line.substr(key.size())));
      return std::stod(v);
    }
  }
  return 0;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

class Bench {
 public:
  Bench(std::string controller_bin, int heartbeat_ms)
      : controller_bin_(std::move(controller_bin)),
        heartbeat_ms_(heartbeat_ms) {}

  Result Run(const Scenario& sc) {
    shutter::testing::TempDir tmp;
    const std::string repo = tmp.Sub("repo");
    FakeNodes fakes(repo, sc.per_node);
    fakes.set_delay(absl::Milliseconds(sc.delay_ms));
    auto server = shutter::StartGrpcServer("0.0.0.0:0", {&fakes});
    if (!server.ok()) Die(server.status().ToString());

    shutter::testing::Subprocess controller;
    const std::string port_file = tmp.Sub("controller.port");
    absl::Status s = controller.Start(
        {controller_bin_, "--insecure", "--listen", "127.0.0.1:0",
         "--port-file", port_file, "--data-dir", tmp.Sub("controller"),
         "--repository", repo, "--node-dead-after-ms", "60000",
         "--heartbeat-interval-ms", absl::StrCat(heartbeat_ms_),
         "--rpc-timeout-ms", "600000", "--log-level", "warn"},
        tmp.Sub("controller.log"));
    if (!s.ok()) Die(s.ToString());
    auto port = shutter::testing::WaitForPortFile(port_file, absl::Seconds(30));
    if (!port.ok()) Die(port.status().ToString());
    const std::string target = absl::StrCat("127.0.0.1:", *port);
    auto repo_id = shutter::fs::ReadFile(repo + "/REPOSITORY_ID");
    if (!repo_id.ok()) Die(repo_id.status().ToString());
    std::string rid(absl::StripAsciiWhitespace(*repo_id));

    // Heartbeats: every node every heartbeat_ms, from a few threads.
    std::vector<HeartbeatRequest> beats(sc.nodes);
    for (int i = 0; i < sc.nodes; ++i) {
      HeartbeatRequest& b = beats[i];
      b.set_node_id(absl::StrFormat("f%05d", i));
      b.set_address(NodeAddress(i, server->port));
      b.set_checkpoint_capacity(sc.capacity);
      b.mutable_instance()->set_instance_id(absl::StrFormat("inst%05d", i));
      b.mutable_instance()->set_start_count(1);
      b.set_repository_id(rid);
      b.set_repository(repo);
      for (int p = 0; p < sc.per_node; ++p) {
        auto* hp = b.add_partitions();
        hp->set_partition_id(i * sc.per_node + p);
        hp->set_role(PARTITION_ROLE_LEADER);
        hp->set_leader_epoch(1);
        hp->set_applied_index(1);
        hp->set_approximate_size_bytes(1000 + p);
      }
    }
    std::vector<HeartbeatRequest> keep_alives = beats;
    for (auto& k : keep_alives) {
      k.clear_partitions();
      k.set_partitions_omitted(true);
    }
    std::atomic<bool> stop{false};
    std::atomic<bool> record{false};
    absl::Mutex lat_mu;
    std::vector<double> latencies;
    constexpr int kBeatThreads = 4;
    std::vector<std::thread> beaters;
    std::atomic<int> first_round{0};
    for (int t = 0; t < kBeatThreads; ++t) {
      beaters.emplace_back([&, t] {
        auto stub = ControllerService::NewStub(shutter::MakeChannel(target));
        // As the reference node does: a full report every 10th round (and
        // when asked), keep-alives otherwise.
        int rounds = 0;
        while (!stop) {
          absl::Time round = absl::Now();
          const bool full_round = rounds++ % 10 == 0;
          for (int i = t; i < sc.nodes && !stop; i += kBeatThreads) {
            grpc::ClientContext ctx;
            ctx.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::seconds(10));
            HeartbeatResponse r;
            absl::Time t0 = absl::Now();
            grpc::Status st = stub->Heartbeat(
                &ctx, full_round ? beats[i] : keep_alives[i], &r);
            if (st.ok() && r.full_report_needed()) {
              grpc::ClientContext again;
              st = stub->Heartbeat(&again, beats[i], &r);
            }
            double ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
            if (!st.ok()) Die("heartbeat: " + st.error_message());
            if (record) {
              absl::MutexLock l(&lat_mu);
              latencies.push_back(ms);
            }
          }
          ++first_round;
          absl::Duration left =
              absl::Milliseconds(heartbeat_ms_) - (absl::Now() - round);
          while (left > absl::ZeroDuration() && !stop) {
            absl::Duration step = std::min(left, absl::Milliseconds(50));
            absl::SleepFor(step);  // pacing the 1 Hz load, not waiting
            left -= step;
          }
        }
      });
    }
    auto admin = AdminService::NewStub(shutter::MakeChannel(target));
    const int total = sc.nodes * sc.per_node;
    absl::Time deadline = absl::Now() + absl::Minutes(5);
    while (first_round < kBeatThreads) {
      if (absl::Now() > deadline) Die("nodes did not register");
      absl::SleepFor(absl::Milliseconds(10));
    }

    Result r;
    if (sc.idle_seconds > 0) {
      const double a = ProcessCpuSeconds(controller.pid());
      absl::SleepFor(absl::Seconds(sc.idle_seconds));  // the window measured
      r.idle_cpu_pct =
          100 * (ProcessCpuSeconds(controller.pid()) - a) / sc.idle_seconds;
    }
    std::atomic<bool> listing{sc.list_while_running};
    std::thread lister;
    r.partitions = total;
    fakes.ResetPeak();
    const double cpu0 = ProcessCpuSeconds(controller.pid());
    const double wb0 = ProcessField(controller.pid(), "io", "write_bytes:");
    record = true;
    if (sc.list_while_running) {
      lister = std::thread([&] {
        auto a = AdminService::NewStub(shutter::MakeChannel(target));
        while (listing) {
          grpc::ClientContext ctx;
          ListPartitionsResponse lp;
          a->ListPartitions(&ctx, ListPartitionsRequest(), &lp);
        }
      });
    }
    const absl::Time t0 = absl::Now();
    {
      grpc::ClientContext ctx;
      CreateSnapshotRequest req;
      CreateSnapshotResponse resp;
      grpc::Status st = admin->CreateSnapshot(&ctx, req, &resp);
      if (!st.ok()) Die("create: " + st.error_message());
      r.create_rpc_ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
    }
    deadline = absl::Now() + absl::Minutes(30);
    for (;;) {
      grpc::ClientContext ctx;
      ListSnapshotsRequest req;
      req.set_limit(1);
      ListSnapshotsResponse resp;
      grpc::Status st = admin->ListSnapshots(&ctx, req, &resp);
      if (!st.ok()) Die("list: " + st.error_message());
      SnapshotState state = resp.snapshots(0).state();
      if (state != SNAPSHOT_STATE_RUNNING && state != SNAPSHOT_STATE_PENDING) {
        r.state = SnapshotState_Name(state);
        break;
      }
      if (absl::Now() > deadline) Die("snapshot did not finish in 30 min");
      absl::SleepFor(absl::Milliseconds(10));  // polling a real process
    }
    r.commit_s = absl::ToDoubleSeconds(absl::Now() - t0);
    r.cpu_s = ProcessCpuSeconds(controller.pid()) - cpu0;
    r.write_bytes = ProcessField(controller.pid(), "io", "write_bytes:") - wb0;
    r.rss_mib = ProcessField(controller.pid(), "status", "VmRSS:") / 1024.0;
    r.peak_in_flight = fakes.peak();
    record = false;
    listing = false;
    if (lister.joinable()) lister.join();
    {
      absl::MutexLock l(&lat_mu);
      r.hb_p50_ms = Percentile(latencies, 0.50);
      r.hb_p99_ms = Percentile(latencies, 0.99);
      r.hb_max_ms = Percentile(latencies, 1.0);
    }
    for (int j = 0; j < sc.more_jobs; ++j) {
      grpc::ClientContext ctx;
      CreateSnapshotResponse resp;
      grpc::Status st =
          admin->CreateSnapshot(&ctx, CreateSnapshotRequest(), &resp);
      if (!st.ok()) Die("create: " + st.error_message());
      for (;;) {
        grpc::ClientContext c2;
        GetSnapshotRequest g;
        g.set_snapshot_id(resp.snapshot_id());
        g.set_summary_only(true);
        GetSnapshotResponse gr;
        st = admin->GetSnapshot(&c2, g, &gr);
        if (!st.ok()) Die("get: " + st.error_message());
        if (gr.snapshot().state() != SNAPSHOT_STATE_RUNNING) break;
        absl::SleepFor(absl::Milliseconds(10));  // polling a real process
      }
      ++r.jobs;
    }
    if (sc.more_jobs > 0) {
      controller.Stop(SIGTERM, absl::Seconds(30)).IgnoreError();
      uint64_t bytes = 0;
      for (const auto& e :
           stdfs::recursive_directory_iterator(tmp.Sub("controller/jobs"))) {
        if (e.is_regular_file()) bytes += e.file_size();
      }
      r.store_mib = bytes / 1048576.0;
      stdfs::remove(port_file);
      const absl::Time t1 = absl::Now();
      s = controller.Start(
          {controller_bin_, "--insecure", "--listen", "127.0.0.1:0",
           "--port-file", port_file, "--data-dir", tmp.Sub("controller"),
           "--repository", repo, "--log-level", "warn"},
          tmp.Sub("controller.log"));
      if (!s.ok()) Die(s.ToString());
      // The port file is written once the jobs are recovered and serving.
      if (!shutter::testing::WaitForPortFile(port_file, absl::Minutes(5))
               .ok()) {
        Die("restarted controller did not serve");
      }
      r.restart_s = absl::ToDoubleSeconds(absl::Now() - t1);
    }
    stop = true;
    for (auto& t : beaters) t.join();
    admin.reset();
    controller.Stop(SIGTERM, absl::Seconds(30)).IgnoreError();
    shutter::StopGrpcServer(*server, absl::ZeroDuration());
    fakes.Shutdown();
    return r;
  }

 private:
  const std::string controller_bin_;
  const int heartbeat_ms_;
};

}  // namespace

int main(int argc, char** argv) {
  bool smoke = false, huge = false;
  std::string only;
  std::string controller_bin = SHUTTER_CONTROLLER_BIN;
  CLI::App app{"Controller cost per partition, with fake nodes",
               "controller_scale_bench"};
  app.add_flag("--smoke", smoke, "Two small scenarios (CI)");
  app.add_flag("--huge", huge, "Also S4: 10,000 nodes");
  app.add_option("--only", only, "Run one scenario (e.g. S2)");
  app.add_option("--controller-bin", controller_bin)->capture_default_str();
  shutter::bench::ParseFlags(app, argc, argv);
  std::vector<Scenario> scenarios;
  if (smoke) {
    scenarios = {{"S1", 20, 10, 4, 0, false}, {"S3", 10, 4, 4, 50, false}};
  } else {
    scenarios = {
        {"S1", 100, 10, 4, 0, false},     {"S2", 1000, 10, 4, 0, false, 10},
        {"S2L", 1000, 10, 4, 0, true, 0}, {"S3", 100, 16, 4, 200, false},
        {"S3b", 100, 16, 4, 50, false},   {"S3c", 100, 16, 16, 200, false},
        {"S3d", 100, 16, 1, 200, false},  {"R", 100, 10, 4, 0, false, 0, 49}};
    if (huge) scenarios.push_back({"S4", 10000, 10, 4, 0, false, 10});
  }
  Bench bench(controller_bin, 1000);
  std::printf("%-3s %6s %7s %4s %5s | %9s %10s %8s %9s %8s %9s %9s %6s | %s\n",
              "", "nodes", "parts", "cap", "delay", "create ms", "commit s",
              "cpu s", "cpu ms/p", "rss MiB", "KiB/p rss", "B written/p",
              "peak", "heartbeat p50/p99/max ms");
  std::map<std::string, Result> results;
  bool first = true;
  for (const Scenario& sc : scenarios) {
    if (!only.empty() && sc.name != only) continue;
    // The previous scenario's files are being removed and its sockets
    // linger: let the disk and the kernel settle so that scenarios do not
    // pay for each other (measured: up to 2x on this VM).
    if (!first && !smoke) absl::SleepFor(absl::Seconds(15));
    first = false;
    Result r = bench.Run(sc);
    results[sc.name] = r;
    std::printf(
        "%-4s %6d %7d %4d %4dms | %9.1f %10.3f %8.2f %9.4f %8.1f %9.2f "
        "%9.0f %6d | %.1f/%.1f/%.1f %s\n",
        sc.name.c_str(), sc.nodes, r.partitions, sc.capacity, sc.delay_ms,
        r.create_rpc_ms, r.commit_s, r.cpu_s, 1000 * r.cpu_s / r.partitions,
        r.rss_mib, 1024 * r.rss_mib / r.partitions,
        r.write_bytes / r.partitions, r.peak_in_flight, r.hb_p50_ms,
        r.hb_p99_ms, r.hb_max_ms, r.state.c_str());
    if (r.restart_s >= 0) {
      std::printf(
          "    restart with %d finished jobs of %d partitions (job "
          "store %.1f MiB): serving after %.2f s\n",
          r.jobs, r.partitions, r.store_mib, r.restart_s);
    }
    if (r.idle_cpu_pct >= 0) {
      std::printf(
          "    heartbeats alone (%d nodes at 1 Hz, %d partitions each): "
          "%.1f%% of one core (target <= 8%% at 1,000 nodes); the snapshot "
          "without them: %.4f ms CPU per partition\n",
          sc.nodes, sc.per_node, r.idle_cpu_pct,
          1000 * (r.cpu_s - r.idle_cpu_pct / 100 * r.commit_s) / r.partitions);
    }
    std::fflush(stdout);
    if (r.state != "SNAPSHOT_STATE_COMMITTED") Die(sc.name + " did not commit");
  }
  auto has = [&](const std::string& n) { return results.count(n) > 0; };
  auto cpu_per_partition = [&](const std::string& n) {
    return results[n].cpu_s / results[n].partitions;
  };
  for (const auto& [big, label] :
       {std::pair<std::string, std::string>{"S2", "10,000"},
        {"S4", "100,000"}}) {
    if (!has("S1") || !has(big)) continue;
    std::printf(
        "CPU per partition, %s vs 1,000 partitions: %.2fx (target <= 1.5x)\n",
        label.c_str(), cpu_per_partition(big) / cpu_per_partition("S1"));
  }
  if (has("S2")) {
    std::printf(
        "S2 create -> COMMITTED %.2f s (target <= 3 s), %.3f ms CPU "
        "per partition (target <= 0.2)\n",
        results["S2"].commit_s, 1000 * cpu_per_partition("S2"));
  }
  for (const auto& [name, r] : results) {
    if (name != "S3") continue;
    const Scenario* sc = nullptr;
    for (const auto& s : scenarios) {
      if (s.name == name) sc = &s;
    }
    double ideal = sc->delay_ms / 1000.0 *
                   ((sc->per_node + sc->capacity - 1) / sc->capacity);
    std::printf(
        "S3 create -> COMMITTED / ideal (%.2f s): %.2fx (target <= "
        "1.15x); peak in flight %d of %d allowed\n",
        ideal, r.commit_s / ideal, r.peak_in_flight, sc->nodes * sc->capacity);
  }
  return 0;
}
