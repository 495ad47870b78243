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
#include "common/rpc.h"
#include "partition/partition_store.h"
#include "shutter/v1/admin.grpc.pb.h"
#include "shutter/v1/partition_data.grpc.pb.h"
#include "snapshot/fs_repository.h"
#include "testing/process.h"
#include "testing/temp_dir.h"

namespace {

using namespace shutter::v1;  // NOLINT
using shutter::testing::PollUntil;
using shutter::testing::Subprocess;
using shutter::testing::WaitForPortFile;
namespace stdfs = std::filesystem;

struct Config {
  int nodes = 4;
  int partitions = 64;
  int capacity = 4;
  int keys = 2048;
  int value_size = 1024;
  int runs = 3;
  double stream_mibps = 4;
};

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "cluster_bench: %s\n", msg.c_str());
  std::exit(1);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

class Cluster {
 public:
  Cluster(const Config& cfg, const std::string& dir) : cfg_(cfg), dir_(dir) {}
  ~Cluster() {
    StopNodes();
    StopController();
  }

  void StartController(int max_in_flight_total) {
    std::string port_file = dir_ + "/controller.port";
    stdfs::remove(port_file);
    controller_ = std::make_unique<Subprocess>();
    // Restarts keep the first port: the nodes know only that address.
    const std::string listen = absl::StrCat("127.0.0.1:", controller_port_);
    auto s = controller_->Start(
        {SHUTTER_CONTROLLER_BIN, "--listen", listen, "--data-dir",
         dir_ + "/controller", "--repository", dir_ + "/repo", "--port-file",
         port_file, "--heartbeat-interval-ms", "100", "--node-dead-after-ms",
         "5000", "--max-in-flight-total", absl::StrCat(max_in_flight_total),
         "--log-level", "warn"},
        dir_ + "/controller.log");
    if (!s.ok()) Die(s.ToString());
    auto port = WaitForPortFile(port_file, absl::Seconds(30));
    if (!port.ok()) Die("controller did not start");
    controller_port_ = *port;
    controller_addr_ = absl::StrCat("127.0.0.1:", *port);
    admin_ = AdminService::NewStub(shutter::MakeChannel(controller_addr_));
    if (!nodes_.empty()) {
      // Running nodes reconnect on their own; wait until they have.
      WaitForLeaders();
    }
  }

  void StopController() {
    admin_.reset();
    if (controller_)
      controller_->Stop(SIGTERM, absl::Seconds(30)).IgnoreError();
    controller_.reset();
  }

  void StartNodes(double stream_mibps) {
    const int per = cfg_.partitions / cfg_.nodes;
    for (int i = 0; i < cfg_.nodes; ++i) {
      std::string port_file = absl::StrCat(dir_, "/node", i, ".port");
      stdfs::remove(port_file);
      auto p = std::make_unique<Subprocess>();
      auto s = p->Start({SHUTTER_NODE_BIN,
                         "--node-id",
                         absl::StrCat("n", i),
                         "--listen",
                         "127.0.0.1:0",
                         "--controller",
                         controller_addr_,
                         "--data-dir",
                         absl::StrCat(dir_, "/node", i),
                         "--repository",
                         dir_ + "/repo",
                         "--partitions",
                         absl::StrCat(i * per, "-", (i + 1) * per - 1),
                         "--checkpoint-capacity",
                         absl::StrCat(cfg_.capacity),
                         "--publish-stream-mibps",
                         absl::StrCat(stream_mibps),
                         "--heartbeat-interval-ms",
                         "100",
                         "--port-file",
                         port_file,
                         "--log-level",
                         "warn"},
                        absl::StrCat(dir_, "/node", i, ".log"));
      if (!s.ok()) Die(s.ToString());
      if (!WaitForPortFile(port_file, absl::Seconds(30)).ok()) {
        Die("node did not start");
      }
      nodes_.push_back(std::move(p));
    }
    WaitForLeaders();
  }

  void StopNodes() {
    for (auto& n : nodes_) n->Stop(SIGTERM, absl::Seconds(30)).IgnoreError();
    nodes_.clear();
  }

  ListPartitionsResponse Partitions() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(5));
    ListPartitionsResponse resp;
    admin_->ListPartitions(&ctx, ListPartitionsRequest(), &resp).ok();
    return resp;
  }

  void WaitForLeaders() {
    bool ok = PollUntil(
        [&] {
          auto parts = Partitions();
          if (parts.partitions_size() != cfg_.partitions) return false;
          for (const auto& p : parts.partitions()) {
            if (p.leader_node_id().empty()) return false;
          }
          return true;
        },
        absl::Seconds(60));
    if (!ok) Die("partitions did not get leaders; logs in " + dir_);
  }

  void Load() {
    auto parts = Partitions();
    std::vector<std::thread> threads;
    std::atomic<size_t> next{0};
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        for (size_t i = next++;
             i < static_cast<size_t>(parts.partitions_size()); i = next++) {
          const auto& p = parts.partitions(i);
          auto stub =
              PartitionData::NewStub(shutter::MakeChannel(p.leader_address()));
          std::mt19937_64 rng(p.partition_id());
          for (int k = 0; k < cfg_.keys; k += 256) {
            WriteRequest req;
            req.set_partition_id(p.partition_id());
            for (int j = k; j < std::min(cfg_.keys, k + 256); ++j) {
              auto* put = req.add_mutations()->mutable_put();
              put->set_key(absl::StrFormat("key-%08d", j));
              std::string v(cfg_.value_size, '\0');
              for (int b = 0; b + 8 <= cfg_.value_size; b += 8) {
                uint64_t r = rng();
                std::memcpy(&v[b], &r, 8);
              }
              put->set_value(std::move(v));
            }
            grpc::ClientContext ctx;
            ctx.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::seconds(60));
            WriteResponse resp;
            grpc::Status s = stub->Write(&ctx, req, &resp);
            if (!s.ok()) Die("load: " + s.error_message());
          }
        }
      });
    }
    for (auto& t : threads) t.join();
  }

  // Takes one cluster snapshot; returns the controller's own create ->
  // commit time in seconds, and removes the snapshot from the repository
  // afterwards (so runs do not fill the disk).
  double TakeSnapshot(uint64_t* bytes) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    CreateSnapshotResponse created;
    grpc::Status s =
        admin_->CreateSnapshot(&ctx, CreateSnapshotRequest(), &created);
    if (!s.ok()) Die("create snapshot: " + s.error_message());
    shutter::v1::Snapshot snap;
    bool done = PollUntil(
        [&] {
          grpc::ClientContext c;
          c.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(5));
          GetSnapshotRequest req;
          req.set_snapshot_id(created.snapshot_id());
          GetSnapshotResponse resp;
          if (!admin_->GetSnapshot(&c, req, &resp).ok()) return false;
          snap = resp.snapshot();
          return snap.state() == SNAPSHOT_STATE_COMMITTED ||
                 snap.state() == SNAPSHOT_STATE_FAILED;
        },
        absl::Minutes(30));
    if (!done || snap.state() != SNAPSHOT_STATE_COMMITTED) {
      Die("snapshot did not commit: " + snap.error());
    }
    *bytes = 0;
    for (const auto& t : snap.partitions()) *bytes += t.total_bytes();
    stdfs::remove_all(dir_ + "/repo/snapshots/" + created.snapshot_id());
    return (snap.finished_at_micros() - snap.created_at_micros()) / 1e6;
  }

  // The floor: nodes stopped, their partitions opened in this process;
  // per node `capacity` plain threads take checkpoints and publish them
  // (largest first), no RPC, no controller.
  double Floor(double stream_mibps, int run) {
    shutter::snapshot::RepositoryOptions ro;
    ro.stream_bytes_per_second =
        static_cast<uint64_t>(stream_mibps * 1048576.0);
    auto repo = shutter::snapshot::FsRepository::Open(dir_ + "/floor-repo", ro);
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
    stdfs::remove_all(dir_ + "/floor-repo/snapshots/" + snap);
    return secs;
  }

 private:
  const Config cfg_;
  const std::string dir_;
  std::unique_ptr<Subprocess> controller_;
  int controller_port_ = 0;
  std::string controller_addr_;
  std::unique_ptr<AdminService::Stub> admin_;
  std::vector<std::unique_ptr<Subprocess>> nodes_;
};

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  std::vector<double> modes = {0};
  for (int i = 1; i < argc; ++i) {
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) Die(std::string("missing value for ") + argv[i]);
      return argv[++i];
    };
    if (!strcmp(argv[i], "--nodes")) {
      cfg.nodes = std::atoi(next());
    } else if (!strcmp(argv[i], "--partitions")) {
      cfg.partitions = std::atoi(next());
    } else if (!strcmp(argv[i], "--capacity")) {
      cfg.capacity = std::atoi(next());
    } else if (!strcmp(argv[i], "--keys")) {
      cfg.keys = std::atoi(next());
    } else if (!strcmp(argv[i], "--value-size")) {
      cfg.value_size = std::atoi(next());
    } else if (!strcmp(argv[i], "--runs")) {
      cfg.runs = std::atoi(next());
    } else if (!strcmp(argv[i], "--stream-mibps")) {
      cfg.stream_mibps = std::atof(next());
    } else if (!strcmp(argv[i], "--smoke")) {
      cfg = Config{2, 8, 2, 64, 512, 1, 8};
    } else {
      std::fprintf(stderr,
                   "usage: %s [--nodes N] [--partitions P] [--capacity C] "
                   "[--keys K] [--value-size B] [--runs R] [--stream-mibps M] "
                   "[--smoke]\n",
                   argv[0]);
      return 2;
    }
  }
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
