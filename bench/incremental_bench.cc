// Incremental snapshots: a full cluster snapshot of a partition set, then,
// after 1% of the keys change (the checkpoint flushes them into new SST
// files), a second snapshot. The second uploads only the new files: SSTs
// already in the repository are recognised by content (and, on the node,
// by its hash cache, so they are not even re-read). Runs the whole stack
// (controller and node processes on loopback) against each repository
// kind -- a directory and a real S3-protocol server (moto_server) -- with
// each publish stream throttled (--stream-mibps) as a remote object store
// would be, and prints bytes uploaded and time for both snapshots and the
// two ratios, and the bytes the nodes read from their checkpoint files per
// byte uploaded. Each store runs twice side by side: with the nodes' hash
// cache (a new file is read once: hashed while uploaded) and without it
// (--hash-cache false: hashed, then uploaded -- the path every first
// snapshot took before one-read publishing).
//
// Usage: incremental_bench [--nodes 2] [--partitions 8] [--mib 512]
//          [--value-size 4096] [--changed-pct 1] [--stream-mibps 32]
//          [--stores fs,s3] [--smoke]
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench_flags.h"
#include "shutter/v1/admin.grpc.pb.h"
#include "snapshot/blob_store.h"
#include "snapshot/repository.h"
#include "testing/binaries.h"
#include "testing/local_cluster.h"
#include "testing/s3_server.h"
#include "testing/temp_dir.h"

namespace {

using namespace shutter::v1;  // NOLINT

struct Config {
  int nodes = 2;
  int partitions = 8;
  int mib = 512;  // whole partition set
  int value_size = 4096;
  double changed_pct = 1.0;
  double stream_mibps = 32;
  std::vector<std::string> stores = {"fs", "s3"};
  bool hash_cache = true;  // the nodes' --hash-cache
};

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "incremental_bench: %s\n", msg.c_str());
  std::exit(1);
}
void Check(const absl::Status& s) {
  if (!s.ok()) Die(s.ToString());
}

using shutter::testing::LocalCluster;

struct Result {
  double seconds = 0;
  uint64_t uploaded = 0;  // bytes of new objects in the repository
  uint64_t logical = 0;   // the snapshot's size (sum of its files)
  uint64_t read = 0;      // bytes the nodes' publishes read
};

uint64_t PublishBytesRead(shutter::testing::LocalCluster& cluster, int nodes) {
  uint64_t total = 0;
  for (int i = 0; i < nodes; ++i) {
    auto st = cluster.NodeStats(i);
    Check(st.status());
    total += st->publish_bytes_read();
  }
  return total;
}

uint64_t StoredBytes(const shutter::snapshot::Repository& repo) {
  auto objects = repo.blob_store()->List("");
  Check(objects.status());
  uint64_t total = 0;
  for (const auto& o : *objects) total += o.size;
  return total;
}

Result Snapshot(shutter::testing::LocalCluster& cluster,
                const shutter::snapshot::Repository& repo, int nodes) {
  const uint64_t before = StoredBytes(repo);
  const uint64_t read_before = PublishBytesRead(cluster, nodes);
  auto id = cluster.CreateSnapshot();
  Check(id.status());
  auto snap = cluster.WaitForSnapshot(*id, absl::Minutes(30));
  Check(snap.status());
  if (snap->state() != SNAPSHOT_STATE_COMMITTED) {
    Die("snapshot did not commit: " + snap->error());
  }
  Result r;
  r.seconds = (snap->finished_at_micros() - snap->created_at_micros()) / 1e6;
  for (const auto& t : snap->partitions()) r.logical += t.total_bytes();
  r.uploaded = StoredBytes(repo) - before;
  r.read = PublishBytesRead(cluster, nodes) - read_before;
  return r;
}

std::pair<Result, Result> RunStore(const Config& cfg, const std::string& kind,
                                   int* keys_changed) {
  shutter::testing::TempDir dir;
  shutter::testing::LocalCluster cluster(
      {SHUTTER_CONTROLLER_BIN, SHUTTER_NODE_BIN, dir.path(), cfg.nodes,
       cfg.partitions / cfg.nodes, /*capacity=*/2, /*heartbeat_ms=*/100,
       /*dead_after_ms=*/5000, /*log_level=*/"warn"});
  std::unique_ptr<shutter::testing::S3TestServer> s3;
  if (kind == "s3") {
    auto server = shutter::testing::S3TestServer::Start(dir.Sub("s3"));
    if (!server.ok()) Die("no S3 server: " + server.status().ToString());
    s3 = std::move(server).value();
    auto uri = s3->NewRepositoryUri("bench");
    Check(uri.status());
    cluster.SetRepository(*uri, s3->DaemonFlags(), s3->Options());
  }
  Check(cluster.StartController());
  Check(cluster.StartAllNodes({"--publish-stream-mibps",
                               absl::StrCat(cfg.stream_mibps), "--hash-cache",
                               cfg.hash_cache ? "true" : "false"}));
  Check(cluster.WaitForLeaders(absl::Seconds(60)));
  auto repo = cluster.OpenRepository();
  Check(repo.status());

  const int keys = static_cast<int>((static_cast<uint64_t>(cfg.mib) << 20) /
                                    cfg.partitions / cfg.value_size);
  Check(cluster.LoadRandom(keys, cfg.value_size, 128));

  Result full = Snapshot(cluster, **repo, cfg.nodes);

  // Change `changed_pct` of the keys of every partition (spread over the
  // key space); the next checkpoint flushes them into a new SST.
  const int changed =
      std::max(1, static_cast<int>(keys * cfg.changed_pct / 100));
  *keys_changed = changed * cfg.partitions;
  for (int p = 0; p < cfg.partitions; ++p) {
    std::mt19937_64 rng(1000 + p);
    std::vector<std::pair<std::string, std::string>> kvs;
    for (int i = 0; i < changed; ++i) {
      kvs.emplace_back(
          absl::StrFormat("key-%08d", static_cast<int>(rng() % keys)),
          LocalCluster::RandomValue(rng, cfg.value_size));
    }
    Check(cluster.Write(p, kvs));
  }
  Result incremental = Snapshot(cluster, **repo, cfg.nodes);
  cluster.CloseChannels();
  cluster.StopAllNodes();
  cluster.StopController(SIGTERM).IgnoreError();
  return {full, incremental};
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  bool smoke = false;
  std::string stores = "fs,s3";
  CLI::App app{"Incremental snapshots: bytes uploaded and time",
               "incremental_bench"};
  app.add_option("--nodes", cfg.nodes)->capture_default_str();
  app.add_option("--partitions", cfg.partitions, "In all")
      ->capture_default_str();
  app.add_option("--mib", cfg.mib, "The whole partition set")
      ->capture_default_str();
  app.add_option("--value-size", cfg.value_size)->capture_default_str();
  app.add_option("--changed-pct", cfg.changed_pct,
                 "Of the keys, rewritten between the two snapshots")
      ->capture_default_str();
  app.add_option("--stream-mibps", cfg.stream_mibps)->capture_default_str();
  app.add_option("--stores", stores, "Comma-separated: fs, s3")
      ->capture_default_str();
  shutter::bench::SmokeFlag(app, &smoke, [&](const auto& given) {
    if (!given("--mib")) cfg.mib = 16;
    if (!given("--partitions")) cfg.partitions = 4;
    if (!given("--stream-mibps")) cfg.stream_mibps = 64;
  });
  shutter::bench::ParseFlags(app, argc, argv);
  cfg.stores = absl::StrSplit(stores, ',');
  if (cfg.nodes < 1 || cfg.partitions < cfg.nodes ||
      cfg.partitions % cfg.nodes != 0 || cfg.mib < 1 || cfg.value_size < 8) {
    Die("bad configuration");
  }
  std::printf(
      "incremental_bench: %d partitions on %d nodes, %d MiB of %d-byte "
      "values, %.1f%% of keys changed, each publish stream at %.0f MiB/s\n",
      cfg.partitions, cfg.nodes, cfg.mib, cfg.value_size, cfg.changed_pct,
      cfg.stream_mibps);
  std::printf("%-6s %-10s %10s %8s %11s %8s %9s %9s %10s %10s\n", "store",
              "publish", "full MiB", "full s", "incr MiB up", "incr s",
              "bytes %", "time %", "read/B up", "incr rd/B");
  for (const std::string& kind : cfg.stores) {
    for (bool cache : {false, true}) {
      cfg.hash_cache = cache;
      int changed = 0;
      auto [full, incr] = RunStore(cfg, kind, &changed);
      const double bytes_ratio =
          full.uploaded ? 100.0 * incr.uploaded / full.uploaded : 0;
      const double time_ratio =
          full.seconds > 0 ? 100.0 * incr.seconds / full.seconds : 0;
      std::printf(
          "%-6s %-10s %10.1f %8.2f %11.2f %8.2f %8.2f%% %8.2f%% %10.2f "
          "%10.2f\n",
          kind.c_str(), cache ? "one-read" : "hash-first",
          full.uploaded / 1048576.0, full.seconds, incr.uploaded / 1048576.0,
          incr.seconds, bytes_ratio, time_ratio,
          full.uploaded ? static_cast<double>(full.read) / full.uploaded : 0,
          incr.uploaded ? static_cast<double>(incr.read) / incr.uploaded : 0);
      std::printf(
          "       (snapshot sizes %.1f / %.1f MiB; %d keys changed; targets: "
          "bytes <= 5%%, time <= 15%%: %s, %s)\n",
          full.logical / 1048576.0, incr.logical / 1048576.0, changed,
          bytes_ratio <= 5 ? "met" : "MISSED",
          time_ratio <= 15 ? "met" : "MISSED");
      if (cache) {
        std::printf(
            "       (full snapshot: %.2f bytes read per byte uploaded; target "
            "<= 1.05: %s)\n",
            full.uploaded ? static_cast<double>(full.read) / full.uploaded : 0,
            full.uploaded && full.read <= 1.05 * full.uploaded ? "met"
                                                               : "MISSED");
      }
      std::fflush(stdout);
    }
  }
  return 0;
}
