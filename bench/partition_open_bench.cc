// What it costs to open a partition store read-only and read its metadata
// (what a node does with every checkpoint it takes, restores and verifies)
// with the table-opening threads Shutter picks (partition::TableOpeningThreads:
// one per 8 table files, at most 16) against RocksDB's default (16 threads
// per column family at every open, whatever the number of files), side by
// side on the same stores, for stores of 2 to 512 table files.
//
//   build/bench/partition_open_bench [--opens N] [--smoke]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "partition/partition_store.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"

namespace {

double CpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec +
         (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

const std::vector<rocksdb::ColumnFamilyDescriptor>& Families() {
  static const auto* cfs = new std::vector<rocksdb::ColumnFamilyDescriptor>{
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
      {"meta", rocksdb::ColumnFamilyOptions()}};
  return *cfs;
}

// A store in the partition layout with `tables` table files: each flush
// writes one to each column family; compactions are off so they stay.
bool MakeStore(const std::string& dir, int tables) {
  rocksdb::DBOptions o;
  o.create_if_missing = true;
  o.create_missing_column_families = true;
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = Families();
  for (auto& cf : cfs) cf.options.disable_auto_compactions = true;
  std::vector<rocksdb::ColumnFamilyHandle*> h;
  rocksdb::DB* db = nullptr;
  if (!rocksdb::DB::Open(o, dir, cfs, &h, &db).ok()) return false;
  bool ok = true;
  for (int f = 0; ok && f < tables / 2; ++f) {
    for (int k = 0; k < 100; ++k) {
      ok &= db->Put({}, h[0], absl::StrCat("key-", f, "-", k),
                    std::string(100, 'v'))
                .ok();
    }
    ok &= db->Put({}, h[1], "applied_index", std::to_string(f + 1)).ok();
    ok &= db->Flush(rocksdb::FlushOptions(), h).ok();
  }
  for (auto* x : h) db->DestroyColumnFamilyHandle(x).PermitUncheckedError();
  ok &= db->Close().ok();
  delete db;
  return ok;
}

// Opens `dir` read-only with RocksDB's default table-opening threads and
// reads the applied index, as ReadOnlyPartition::Open did before.
bool OpenWithRocksDbDefault(const std::string& dir) {
  rocksdb::DBOptions o;  // max_file_opening_threads = 16
  std::vector<rocksdb::ColumnFamilyHandle*> h;
  rocksdb::DB* db = nullptr;
  if (!rocksdb::DB::OpenForReadOnly(o, dir, Families(), &h, &db).ok()) {
    return false;
  }
  std::string v;
  const bool ok = db->Get({}, h[1], "applied_index", &v).ok();
  for (auto* x : h) db->DestroyColumnFamilyHandle(x).PermitUncheckedError();
  delete db;
  return ok;
}

struct Cost {
  double wall_ms = 0;
  double cpu_ms = 0;
};

template <typename F>
Cost Measure(int opens, F open) {
  const auto t0 = std::chrono::steady_clock::now();
  const double c0 = CpuSeconds();
  for (int i = 0; i < opens; ++i) {
    if (!open()) {
      std::fprintf(stderr, "open failed\n");
      std::exit(1);
    }
  }
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  return {wall / opens * 1e3, (CpuSeconds() - c0) / opens * 1e3};
}

}  // namespace

int main(int argc, char** argv) {
  int opens = 200;
  bool smoke = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--smoke") == 0) {
      smoke = true;
    } else if (std::strcmp(argv[i], "--opens") == 0 && i + 1 < argc) {
      opens = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--opens N] [--smoke]\n", argv[0]);
      return 2;
    }
  }
  if (smoke) opens = 4;
  // Each side opens the store this many times in each of two halves.
  const int per_half = std::max(1, opens / 2);
  char tmpl[] = "/tmp/shutter-partition-open-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return 1;
  const std::string root = tmpl;
  std::printf(
      "read-only open + metadata read, %d opens of each per row (ms per "
      "open)\n"
      "%7s %8s | %22s | %22s | %s\n",
      2 * per_half, "tables", "threads", "RocksDB default wall/CPU",
      "Shutter wall/CPU", "CPU ratio");
  const std::vector<int> sizes =
      smoke ? std::vector<int>{2, 32} : std::vector<int>{2, 16, 128, 512};
  int rc = 0;
  for (int tables : sizes) {
    const std::string dir = absl::StrCat(root, "/store-", tables);
    if (!MakeStore(dir, tables)) {
      std::fprintf(stderr, "cannot build a store of %d tables\n", tables);
      rc = 1;
      break;
    }
    const int threads = shutter::partition::TableOpeningThreads(dir);
    Cost before, after;
    // Alternating halves, so a drift of the machine's speed hits both.
    for (int half = 0; half < 2; ++half) {
      Cost b = Measure(per_half, [&] { return OpenWithRocksDbDefault(dir); });
      Cost a = Measure(per_half, [&] {
        return shutter::partition::ReadOnlyPartition::Open(dir).ok();
      });
      before.wall_ms += b.wall_ms / 2;
      before.cpu_ms += b.cpu_ms / 2;
      after.wall_ms += a.wall_ms / 2;
      after.cpu_ms += a.cpu_ms / 2;
    }
    std::printf("%7d %8d | %10.3f / %9.3f | %10.3f / %9.3f | %.2fx\n", tables,
                threads, before.wall_ms, before.cpu_ms, after.wall_ms,
                after.cpu_ms, after.cpu_ms / before.cpu_ms);
  }
  shutter::fs::RemoveAll(root).IgnoreError();
  return rc;
}
