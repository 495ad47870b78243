// The headline: serial versus parallel cluster snapshot on a real local
// cluster (a controller and node processes on loopback, real data), plus
// the floor: the same checkpoints and copies done in one process by a
// plain thread pool with the same per-node limits, no RPC.
//
// For each repository mode (plain local disk, then each publish stream
// throttled as a remote object store would be) it runs, alternating, the
// serial controller (--max-in-flight-total 1) and the default one
// (per-node limits only), and prints median times and ratios.
//
// Usage: cluster_bench [--nodes 4] [--partitions 64] [--capacity 4]
//          [--keys 2048] [--value-size 1024] [--runs 3]
//          [--stream-mibps 4] [--smoke]
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench_flags.h"
#include "common/rpc.h"
#include "partition/partition_store.h"
#include "shutter/v1/admin.grpc.pb.h"
#include "snapshot/repository.h"
#include "testing/binaries.h"
#include "testing/local_cluster.h"
#include "testing/temp_dir.h"

namespace {

using namespace shutter::v1;  // NOLINT
namespace stdfs = std::filesystem;

using Config = shutter::bench::ClusterConfig;

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "cluster_bench: %s\n", msg.c_str());
  std::exit(1);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// The benchmark's cluster: a LocalCluster (controller + nodes on
// loopback) plus loading, timed snapshots and the in-process floor.
class Cluster {
 public:
  Cluster(const Config& cfg, const std::string& dir)
      : cfg_(cfg),
        dir_(dir),
        local_({SHUTTER_CONTROLLER_BIN, SHUTTER_NODE_BIN, dir, cfg.nodes,
                cfg.partitions / cfg.nodes, cfg.capacity, /*heartbeat_ms=*/100,
                /*dead_after_ms=*/5000, /*log_level=*/"warn"}) {}

  // (Re)starts the controller; the nodes reconnect to the same address.
  void StartController(int max_in_flight_total) {
    Check(local_.StartController(
        {"--max-in-flight-total", absl::StrCat(max_in_flight_total)}));
    if (nodes_running_) Check(local_.WaitForLeaders(absl::Seconds(60)));
  }
  void StopController() { local_.StopController(SIGTERM).IgnoreError(); }

  void StartNodes(double stream_mibps) {
    Check(local_.StartAllNodes({"--publish-stream-mibps",
                                absl::StrCat(stream_mibps), "--hash-cache",
                                "false"}));
    nodes_running_ = true;
    Check(local_.WaitForLeaders(absl::Seconds(60)));
  }
  void StopNodes() {
    local_.StopAllNodes();
    nodes_running_ = false;
  }

  void Load() { Check(local_.LoadRandom(cfg_.keys, cfg_.value_size, 256)); }

  // Takes one cluster snapshot; returns the controller's own create ->
  // commit time in seconds, and removes the snapshot from the repository
  // afterwards (so runs do not fill the disk).
  double TakeSnapshot(uint64_t* bytes) {
    auto id = local_.CreateSnapshot();
    Check(id.status());
    auto snap = local_.WaitForSnapshot(*id, absl::Minutes(30));
    Check(snap.status());
    if (snap->state() != SNAPSHOT_STATE_COMMITTED) {
      Die("snapshot did not commit: " + snap->error());
    }
    *bytes = 0;
    for (const auto& t : snap->partitions()) *bytes += t.total_bytes();
    // Every run publishes everything: drop the content-addressed objects
    // too, or the next run would find its SSTs already stored.
    stdfs::remove_all(local_.repo_dir() + "/snapshots");
    stdfs::remove_all(local_.repo_dir() + "/blobs");
    return (snap->finished_at_micros() - snap->created_at_micros()) / 1e6;
  }

  // The floor: nodes stopped, their partitions opened in this process;
  // per node `capacity` plain threads take checkpoints and publish them
  // (largest first), no RPC, no controller.
  double Floor(double stream_mibps, int run) {
    shutter::snapshot::RepositoryOptions ro;
    ro.stream_bytes_per_second =
        static_cast<uint64_t>(stream_mibps * 1048576.0);
    auto repo = shutter::snapshot::OpenRepository(dir_ + "/floor-repo", ro);
    if (!repo.ok()) Die(repo.status().ToString());
    const int per = cfg_.partitions / cfg_.nodes;
    std::vector<std::unique_ptr<shutter::partition::PartitionStore>> stores;
    for (int p = 0; p < cfg_.partitions; ++p) {
      auto s = shutter::partition::PartitionStore::Open(
          {absl::StrFormat("%s/node%d/partitions/%05d", dir_, p / per, p),
           static_cast<uint32_t>(p)});
      if (!s.ok()) Die(s.status().ToString());
      stores.push_back(std::move(s).value());
    }
    const std::string snap = absl::StrCat("floor-", run);
    absl::Time start = absl::Now();
    std::vector<std::thread> threads;
    for (int n = 0; n < cfg_.nodes; ++n) {
      auto next = std::make_shared<std::atomic<int>>(0);
      std::vector<int> order;
      for (int p = n * per; p < (n + 1) * per; ++p) order.push_back(p);
      std::sort(order.begin(), order.end(), [&](int a, int b) {
        return stores[a]->ApproximateSizeBytes() >
               stores[b]->ApproximateSizeBytes();
      });
      for (int t = 0; t < cfg_.capacity; ++t) {
        threads.emplace_back([&, next, order] {
          for (int i = (*next)++; i < static_cast<int>(order.size());
               i = (*next)++) {
            auto& store = stores[order[i]];
            std::string staging =
                absl::StrFormat("%s/floor-staging-%d-%d", dir_, run, order[i]);
            if (!store->CreateCheckpoint(staging).ok()) Die("floor checkpoint");
            auto meta = shutter::partition::PartitionStore::ReadMeta(staging);
            if (!meta.ok()) Die(meta.status().ToString());
            PartitionManifest h;
            h.set_snapshot_id(snap);
            h.set_partition_id(order[i]);
            h.set_applied_index(meta->applied_index);
            h.set_leader_epoch(meta->leader_epoch);
            auto m = (*repo)->PublishPartition(h, staging);
            if (!m.ok()) Die(m.status().ToString());
            stdfs::remove_all(staging);
          }
        });
      }
    }
    for (auto& t : threads) t.join();
    double secs = absl::ToDoubleSeconds(absl::Now() - start);
    stdfs::remove_all(dir_ + "/floor-repo/snapshots");
    stdfs::remove_all(dir_ + "/floor-repo/blobs");
    return secs;
  }

 private:
  static void Check(const absl::Status& s) {
    if (!s.ok()) Die(s.ToString());
  }

  const Config cfg_;
  const std::string dir_;
  shutter::testing::LocalCluster local_;
  bool nodes_running_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  std::vector<double> modes = {0};
  bool smoke = false;
  CLI::App app{"Cluster snapshot: serial versus parallel", "cluster_bench"};
  shutter::bench::AddClusterFlags(app, &cfg, &smoke);
  shutter::bench::ParseFlags(app, argc, argv);
  if (cfg.nodes < 1 || cfg.partitions % cfg.nodes != 0) {
    Die("--partitions must be a multiple of --nodes");
  }
  modes.push_back(cfg.stream_mibps);
  shutter::testing::TempDir tmp;
  std::printf(
      "cluster snapshot: %d nodes, %d partitions, capacity %d per node, %d "
      "keys x %d B per partition, %d runs per variant (median)\n",
      cfg.nodes, cfg.partitions, cfg.capacity, cfg.keys, cfg.value_size,
      cfg.runs);
  std::printf("%-30s %10s %11s %9s %9s %10s %14s\n", "repository", "serial s",
              "parallel s", "speedup", "ideal", "floor s", "parallel/floor");
  Cluster cluster(cfg, tmp.path());
  bool loaded = false;
  for (double mibps : modes) {
    cluster.StartController(0);
    cluster.StartNodes(mibps);
    if (!loaded) {
      cluster.Load();
      loaded = true;
    }
    std::vector<double> serial, parallel;
    uint64_t bytes = 0;
    for (int r = 0; r < cfg.runs; ++r) {
      // Alternate, so drift on the machine hits both alike.
      cluster.StopController();
      cluster.StartController(1);
      serial.push_back(cluster.TakeSnapshot(&bytes));
      cluster.StopController();
      cluster.StartController(0);
      parallel.push_back(cluster.TakeSnapshot(&bytes));
    }
    cluster.StopNodes();
    cluster.StopController();
    std::vector<double> floor;
    for (int r = 0; r < cfg.runs; ++r) floor.push_back(cluster.Floor(mibps, r));
    double s = Median(serial), p = Median(parallel), f = Median(floor);
    std::string name =
        mibps > 0 ? absl::StrFormat("throttled %.1f MiB/s per stream", mibps)
                  : "local disk, unthrottled";
    std::printf("%-30s %10.2f %11.2f %8.2fx %8dx %10.2f %13.2fx\n",
                name.c_str(), s, p, s / p, cfg.nodes * cfg.capacity, f, p / f);
    std::printf("  (%.1f MiB per snapshot; serial runs:", bytes / 1048576.0);
    for (double x : serial) std::printf(" %.2f", x);
    std::printf("; parallel runs:");
    for (double x : parallel) std::printf(" %.2f", x);
    std::printf("; floor runs:");
    for (double x : floor) std::printf(" %.2f", x);
    std::printf(")\n");
    std::fflush(stdout);
  }
  return 0;
}
