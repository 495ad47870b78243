// shutterctl data: load (sample data into the reference nodes).
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/common.h"
#include "cli/jobs.h"
#include "cli/table.h"
#include "common/ids.h"
#include "common/text.h"
#include "controller/job_states.h"
#include "shutter/v1/partition_data.grpc.pb.h"

namespace shutter::cli {
namespace {

using namespace shutter::v1;  // NOLINT
using controller::StateName;

// Writes deterministic sample data into every (or the listed) partition's
// leader: keys "key-%08d", values of `value_size` pseudo-random bytes.
int LoadData(const Global& g, const std::string& partitions, int keys,
             int value_size, int batch) {
  Client c(g);
  ListPartitionsResponse parts;
  grpc::Status s = c.Call(&AdminService::Stub::ListPartitions,
                          ListPartitionsRequest(), &parts);
  if (!s.ok()) return FailRpc(s, "list partitions");
  std::set<uint32_t> wanted;
  if (!partitions.empty()) {
    auto ids = ParseIdList(partitions);
    if (!ids.ok()) {
      return Fail(absl::StrCat("--partitions: ", ids.status().message()), 2);
    }
    wanted.insert(ids->begin(), ids->end());
  }
  std::vector<PartitionInfo> targets;
  for (const auto& p : parts.partitions()) {
    if (!wanted.empty() && wanted.count(p.partition_id()) == 0) continue;
    if (p.leader_address().empty()) {
      return Fail(
          absl::StrCat("partition ", p.partition_id(), " has no live leader"));
    }
    targets.push_back(p);
  }
  if (targets.empty()) return Fail("no partitions to load");
  absl::Time start = absl::Now();
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::string first_error;
  absl::Mutex err_mu;
  auto worker = [&] {
    for (size_t i = next++; i < targets.size() && !failed; i = next++) {
      const PartitionInfo& p = targets[i];
      auto stub = PartitionData::NewStub(MakeChannel(p.leader_address()));
      std::mt19937_64 rng(p.partition_id() * 7919 + 1);
      for (int k = 0; k < keys && !failed; k += batch) {
        WriteRequest req;
        req.set_partition_id(p.partition_id());
        for (int j = k; j < std::min(keys, k + batch); ++j) {
          auto* put = req.add_mutations()->mutable_put();
          put->set_key(absl::StrFormat("key-%08d", j));
          std::string v(value_size, '\0');
          for (int b = 0; b + 8 <= value_size; b += 8) {
            uint64_t r = rng();
            memcpy(&v[b], &r, 8);
          }
          put->set_value(std::move(v));
        }
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(g.timeout_ms));
        WriteResponse resp;
        grpc::Status ws = stub->Write(&ctx, req, &resp);
        if (!ws.ok()) {
          absl::MutexLock l(&err_mu);
          if (!failed.exchange(true)) {
            first_error = absl::StrCat("write to partition ", p.partition_id(),
                                       ": ", ws.error_message());
          }
        }
      }
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  if (failed) return Fail(first_error);
  double secs = absl::ToDoubleSeconds(absl::Now() - start);
  uint64_t bytes = static_cast<uint64_t>(keys) * value_size * targets.size();
  std::printf(
      "loaded %zu partitions x %d keys x %d B = %s in %.2fs (%.1f MiB/s)\n",
      targets.size(), keys, value_size, HumanBytes(bytes).c_str(), secs,
      bytes / 1048576.0 / std::max(secs, 1e-9));
  return 0;
}

}  // namespace

void AddDataCommands(CLI::App& app, Commands& cmds) {
  Global& g = cmds.g;
  int& rc = cmds.rc;
  struct Flags {
    int keys = 10000, value_size = 1024, batch = 500;
    std::string partitions;
  };
  Flags& f = cmds.Keep<Flags>();
  auto* data = app.add_subcommand("data", "Sample data (reference nodes)")
                   ->require_subcommand(1);
  auto* load = data->add_subcommand(
      "load", "Write sample keys to partition leaders via PartitionData");
  load->add_option("--keys-per-partition", f.keys)
      ->capture_default_str()
      ->check(CLI::Range(1, 100000000));
  load->add_option("--value-size", f.value_size)
      ->capture_default_str()
      ->check(CLI::Range(8, 16 << 20));
  load->add_option("--batch", f.batch, "Keys per write batch")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  load->add_option("--partitions", f.partitions, "Default: all");
  load->callback(
      [&] { rc = LoadData(g, f.partitions, f.keys, f.value_size, f.batch); });
}

}  // namespace shutter::cli
