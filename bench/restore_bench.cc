// Restore, or verify: serial versus parallel, on a real local cluster (a
// controller and node processes on loopback, real data, each partition's
// download stream throttled as a remote object store would be). The same
// committed snapshot is restored onto every partition (--job restore), or
// verified on the nodes (--job verify: sizes and SHA-256; --job
// deep-verify: each checkpoint downloaded, opened and read), alternating
// the serial controller (--max-in-flight-total 1) and the default one
// (per-node limits only); prints median times and the speedup against its
// ideal, nodes x capacity (the target is at least 0.8 of it).
//
// Usage: restore_bench [--job restore|verify|deep-verify] [--nodes 4]
//          [--partitions 64] [--capacity 4] [--keys 2048]
//          [--value-size 1024] [--runs 3] [--stream-mibps 4] [--smoke]
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench_flags.h"
#include "shutter/v1/admin.grpc.pb.h"
#include "testing/binaries.h"
#include "testing/local_cluster.h"
#include "testing/temp_dir.h"

namespace {

using namespace shutter::v1;  // NOLINT

using Config = shutter::bench::ClusterConfig;

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "restore_bench: %s\n", msg.c_str());
  std::exit(1);
}

void Check(const absl::Status& s) {
  if (!s.ok()) Die(s.ToString());
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Verifies `snapshot` on the nodes (deep or not); returns the job's own
// create -> finish time in seconds.
double Verify(shutter::testing::LocalCluster& c, const std::string& snapshot,
              bool deep, uint64_t* bytes) {
  VerifySnapshotRequest req;
  req.set_snapshot_id(snapshot);
  req.set_deep(deep);
  VerifySnapshotResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  grpc::Status s = c.admin()->VerifySnapshot(&ctx, req, &resp);
  if (!s.ok()) Die("VerifySnapshot: " + s.error_message());
  auto job = c.WaitForSnapshot(resp.verify_id(), absl::Minutes(30));
  Check(job.status());
  if (job->state() != SNAPSHOT_STATE_COMMITTED) {
    Die("verify did not pass: " + job->error());
  }
  *bytes = 0;
  for (const auto& t : job->partitions()) *bytes += t.total_bytes();
  return (job->finished_at_micros() - job->created_at_micros()) / 1e6;
}

// Restores every partition of `snapshot`; returns the job's own create ->
// finish time in seconds.
double Restore(shutter::testing::LocalCluster& c, const std::string& snapshot,
               uint64_t* bytes) {
  RestoreSnapshotRequest req;
  req.set_snapshot_id(snapshot);
  RestoreSnapshotResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  grpc::Status s = c.admin()->RestoreSnapshot(&ctx, req, &resp);
  if (!s.ok()) Die("RestoreSnapshot: " + s.error_message());
  auto job = c.WaitForSnapshot(resp.restore_id(), absl::Minutes(30));
  Check(job.status());
  if (job->state() != SNAPSHOT_STATE_COMMITTED) {
    Die("restore did not finish: " + job->error());
  }
  *bytes = resp.plan().total_bytes();
  return (job->finished_at_micros() - job->created_at_micros()) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  std::string job = "restore";
  bool smoke = false;
  CLI::App app{"Restore or verify: serial versus parallel", "restore_bench"};
  app.add_option("--job", job, "What to run")
      ->capture_default_str()
      ->check(CLI::IsMember({"restore", "verify", "deep-verify"}));
  shutter::bench::AddClusterFlags(app, &cfg, &smoke);
  shutter::bench::ParseFlags(app, argc, argv);
  if (cfg.nodes < 1 || cfg.partitions % cfg.nodes != 0) {
    Die("--partitions must be a multiple of --nodes");
  }
  shutter::testing::TempDir tmp;
  shutter::testing::LocalCluster c(
      {SHUTTER_CONTROLLER_BIN, SHUTTER_NODE_BIN, tmp.path(), cfg.nodes,
       cfg.partitions / cfg.nodes, cfg.capacity, /*heartbeat_ms=*/100,
       /*dead_after_ms=*/5000, /*log_level=*/"warn"});
  Check(c.StartController());
  Check(c.StartAllNodes(
      {"--publish-stream-mibps", absl::StrCat(cfg.stream_mibps)}));
  Check(c.WaitForLeaders(absl::Seconds(60)));
  Check(c.LoadRandom(cfg.keys, cfg.value_size, 256));
  auto id = c.CreateSnapshot();
  Check(id.status());
  auto snap = c.WaitForSnapshot(*id, absl::Minutes(30));
  Check(snap.status());
  if (snap->state() != SNAPSHOT_STATE_COMMITTED) Die(snap->error());

  std::printf(
      "cluster %s: %d nodes, %d partitions, capacity %d per node, %d "
      "keys x %d B per partition, each download stream throttled to %.1f "
      "MiB/s, %d runs per variant (median)\n",
      job.c_str(), cfg.nodes, cfg.partitions, cfg.capacity, cfg.keys,
      cfg.value_size, cfg.stream_mibps, cfg.runs);
  std::vector<double> serial, parallel;
  uint64_t bytes = 0;
  auto restart = [&](int max_in_flight) {
    c.StopController(SIGTERM).IgnoreError();
    c.CloseChannels();
    Check(c.StartController(
        {"--max-in-flight-total", absl::StrCat(max_in_flight)}));
    Check(c.WaitForLeaders(absl::Seconds(60)));
  };
  auto run = [&] {
    if (job == "restore") return Restore(c, *id, &bytes);
    return Verify(c, *id, job == "deep-verify", &bytes);
  };
  for (int r = 0; r < cfg.runs; ++r) {
    // Alternate, so drift on the machine hits both alike.
    restart(1);
    serial.push_back(run());
    restart(0);
    parallel.push_back(run());
  }
  const double s = Median(serial), p = Median(parallel);
  const int ideal = cfg.nodes * cfg.capacity;
  std::printf("%-12s %10s %11s %9s %9s %9s\n",
              job == "restore" ? "MiB restored" : "MiB verified", "serial s",
              "parallel s", "speedup", "ideal", "target");
  std::printf("%-12.1f %10.2f %11.2f %8.2fx %8dx %8.1fx  %s\n",
              bytes / 1048576.0, s, p, s / p, ideal, 0.8 * ideal,
              s / p >= 0.8 * ideal ? "met" : "NOT met");
  std::printf("  (serial runs:");
  for (double x : serial) std::printf(" %.2f", x);
  std::printf("; parallel runs:");
  for (double x : parallel) std::printf(" %.2f", x);
  std::printf(")\n");
  c.CloseChannels();
  c.StopAllNodes();
  c.StopController(SIGTERM).IgnoreError();
  return 0;
}
