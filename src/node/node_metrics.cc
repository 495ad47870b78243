#include "node/node_metrics.h"

#include <filesystem>
#include <system_error>

#include "common/fs.h"

namespace shutter::node {

namespace {
// Bytes of regular files below `dir` whose top-level entry passes `keep`.
uint64_t BytesBelow(const std::filesystem::path& dir,
                    bool (*keep)(const std::string& name)) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& top : std::filesystem::directory_iterator(dir, ec)) {
    if (!keep(top.path().filename().string())) continue;
    std::error_code ec2;
    for (auto it =
             std::filesystem::recursive_directory_iterator(top.path(), ec2);
         !ec2 && it != std::filesystem::recursive_directory_iterator();
         it.increment(ec2)) {
      std::error_code ec3;
      if (it->is_regular_file(ec3)) total += it->file_size(ec3);
    }
  }
  return total;
}
}  // namespace

void ExportNodeState(metrics::Registry* registry, const std::string& data_dir,
                     const CheckpointTaker* taker,
                     const PartitionRestorer* restorer, const Authorizer* authz,
                     const partition::WriteStallStats* stalls) {
  registry->AddGaugeCallback(
      "shutter_node_checkpoints_in_flight",
      "Checkpoint requests being handled (queued or running)",
      [taker](const metrics::EmitFn& emit) {
        emit({}, taker->GetStats().in_flight);
      });
  registry->AddGaugeCallback(
      "shutter_node_checkpoints_running",
      "Checkpoints running now (at most the capacity; the rest of those in "
      "flight wait for a slot)",
      [taker](const metrics::EmitFn& emit) {
        emit({}, taker->GetStats().running);
      });
  registry->AddGaugeCallback(
      "shutter_node_checkpoint_capacity",
      "Checkpoints this node takes at once (reported to the controller)",
      [taker](const metrics::EmitFn& emit) {
        emit({}, taker->options().capacity);
      });
  registry->AddGaugeCallback("shutter_node_restores_in_flight",
                             "Restores being handled",
                             [restorer](const metrics::EmitFn& emit) {
                               emit({}, restorer->GetStats().in_flight);
                             });
  registry->AddGaugeCallback(
      "shutter_node_filesystem_free_bytes",
      "Free space on the filesystem of the data directory",
      [data_dir](const metrics::EmitFn& emit) {
        auto free = fs::FreeBytes(data_dir);
        if (free.ok()) emit({}, static_cast<double>(*free));
      });
  registry->AddGaugeCallback(
      "shutter_node_staging_bytes",
      "Bytes in checkpoints and restores being assembled",
      [data_dir](const metrics::EmitFn& emit) {
        const uint64_t staging = BytesBelow(
            data_dir + "/staging", [](const std::string&) { return true; });
        const uint64_t restoring = BytesBelow(
            data_dir + "/partitions",
            [](const std::string& n) { return n.rfind(".restore-", 0) == 0; });
        emit({}, static_cast<double>(staging + restoring));
      });
  registry->AddCounterCallback(
      "shutter_auth_denials_total",
      "Calls refused for authentication or authorization",
      [authz](const metrics::EmitFn& emit) {
        emit({}, static_cast<double>(authz->denials()));
      });
  if (stalls == nullptr) return;
  registry->AddCounterCallback(
      "shutter_node_write_stalls_total",
      "RocksDB write stalls (writes slowed down or stopped) begun",
      [stalls](const metrics::EmitFn& emit) {
        emit({}, static_cast<double>(stalls->stalls.load()));
      });
  registry->AddCounterCallback(
      "shutter_node_write_stall_seconds_total",
      "Time the partitions' writes were stalled by RocksDB (ended stalls)",
      [stalls](const metrics::EmitFn& emit) {
        emit({}, static_cast<double>(stalls->stalled_micros.load()) / 1e6);
      });
}

}  // namespace shutter::node
