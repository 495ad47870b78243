// What it costs to write a manifest's JSON: protobuf's JSON printer (how
// every manifest was written before) against Shutter's own encoder
// (snapshot::internal::EncodeManifestFast, byte for byte the same output),
// side by side on the same messages, for cluster manifests of 1,600 to
// 100,000 partitions (written once per snapshot, on the commit's path) and
// partition manifests of 10 to 1,000 files (one per checkpoint, on the
// node). Each row: the median of the repetitions, alternating the two.
//
//   build/bench/manifest_encode_bench [--reps N] [--smoke]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "snapshot/manifest.h"

namespace {

using Clock = std::chrono::steady_clock;

shutter::v1::ClusterManifest Cluster(int partitions) {
  shutter::v1::ClusterManifest m;
  m.set_format_version(shutter::snapshot::kManifestFormatVersion);
  m.set_snapshot_id("20261205T170000.000Z-1a2b3c4d");
  m.set_label("nightly");
  m.set_created_at_micros(1'764'950'400'000'000);
  m.set_committed_at_micros(1'764'950'401'234'567);
  for (int i = 0; i < partitions; ++i) {
    auto* p = m.add_partitions();
    p->set_partition_id(i);
    p->set_node_id(absl::StrFormat("node-%04d", i / 100));
    p->set_leader_epoch(7);
    p->set_applied_index(1'000'000 + i);
    p->set_manifest_path(absl::StrFormat(
        "snapshots/20261205T170000.000Z-1a2b3c4d/partitions/%05d/"
        "MANIFEST.json",
        i));
    p->set_total_bytes(64ull << 20);
    p->set_manifest_sha256(std::string(64, "0123456789abcdef"[i % 16]));
  }
  return m;
}

shutter::v1::PartitionManifest Partition(int files) {
  shutter::v1::PartitionManifest m;
  m.set_format_version(shutter::snapshot::kManifestFormatVersion);
  m.set_snapshot_id("20261205T170000.000Z-1a2b3c4d");
  m.set_partition_id(42);
  m.set_node_id("node-0001");
  m.set_leader_epoch(7);
  m.set_applied_index(123'456'789);
  m.set_created_at_micros(1'764'950'400'000'000);
  for (int i = 0; i < files; ++i) {
    auto* f = m.add_files();
    f->set_name(absl::StrFormat("%06d.sst", i + 12));
    f->set_size_bytes(8ull << 20);
    const std::string sha(64, "fedcba9876543210"[i % 16]);
    f->set_sha256(sha);
    f->set_object_key(
        absl::StrCat("blobs/sha256/", sha.substr(0, 2), "/", sha));
  }
  m.set_total_bytes(files * (8ull << 20));
  return m;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median milliseconds per encode of `m` by the printer and by the fast
// path, alternating; exits if they differ or the fast path is not taken.
void Row(const char* what, int n, const google::protobuf::Message& m,
         int reps) {
  std::vector<double> printer, fast;
  size_t bytes = 0;
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    const std::string a = shutter::snapshot::internal::PrintManifestJson(m);
    auto t1 = Clock::now();
    std::string b;
    const bool taken = shutter::snapshot::internal::EncodeManifestFast(m, &b);
    auto t2 = Clock::now();
    if (!taken || a != b) {
      std::fprintf(stderr, "%s of %d: the fast encoder %s\n", what, n,
                   taken ? "wrote other bytes" : "was not taken");
      std::exit(1);
    }
    bytes = a.size();
    printer.push_back(
        std::chrono::duration<double, std::milli>(t1 - t0).count());
    fast.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
  }
  const double p = Median(printer), f = Median(fast);
  std::printf("%-18s %8d %12zu %12.3f %12.3f %8.3fx %10.0f\n", what, n, bytes,
              p, f, f / p, bytes / 1e6 / (f / 1e3));
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 7;
  bool smoke = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--smoke") == 0) {
      smoke = true;
    } else if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr,
                   "usage: manifest_encode_bench [--reps N] [--smoke]\n");
      return 2;
    }
  }
  if (smoke) reps = 1;
  std::printf("%-18s %8s %12s %12s %12s %9s %10s\n", "manifest", "entries",
              "bytes", "printer ms", "fast ms", "ratio", "fast MB/s");
  const std::vector<int> clusters =
      smoke ? std::vector<int>{100} : std::vector<int>{1'600, 10'000, 100'000};
  for (int n : clusters) Row("cluster", n, Cluster(n), reps);
  const std::vector<int> partitions =
      smoke ? std::vector<int>{10} : std::vector<int>{10, 100, 1'000};
  for (int n : partitions) Row("partition (files)", n, Partition(n), reps);
  return 0;
}
