#include "node/node_host.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

namespace shutter::node {

absl::StatusOr<std::unique_ptr<NodeHost>> NodeHost::Open(
    const Options& options) {
  for (uint32_t id : options.leader_for) {
    if (std::find(options.partitions.begin(), options.partitions.end(), id) ==
        options.partitions.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--leader-for: partition ", id, " is not in --partitions"));
    }
  }
  std::unique_ptr<NodeHost> host(new NodeHost(options));
  RETURN_IF_ERROR(fs::CreateDirs(options.data_dir + "/partitions"));
  for (uint32_t id : options.partitions) {
    partition::PartitionStore::Options so;
    so.partition_id = id;
    so.path = absl::StrFormat("%s/partitions/%05u", options.data_dir, id);
    ASSIGN_OR_RETURN(auto store, partition::PartitionStore::Open(so));
    host->stores_[id] = std::move(store);
  }
  return host;
}

absl::Status NodeHost::TakeLeadership() {
  for (uint32_t id : leader_for_) {
    partition::PartitionStore* store = stores_.at(id).get();
    ASSIGN_OR_RETURN(uint64_t epoch, store->TakeLeadership());
    spdlog::info("partition {}: leader at epoch {} (applied index {})", id,
                 epoch, store->meta().applied_index);
  }
  return absl::OkStatus();
}

partition::PartitionStore* NodeHost::Find(uint32_t partition_id) const {
  auto it = stores_.find(partition_id);
  return it == stores_.end() ? nullptr : it->second.get();
}

std::vector<NodeHost::PartitionStatus> NodeHost::Status() const {
  std::vector<PartitionStatus> out;
  out.reserve(stores_.size());
  for (const auto& [id, store] : stores_) {
    partition::PartitionMeta m = store->meta();
    PartitionStatus s;
    s.partition_id = id;
    s.leader = store->is_leader();
    s.leader_epoch = m.leader_epoch;
    s.applied_index = m.applied_index;
    s.approximate_size_bytes = store->ApproximateSizeBytes();
    out.push_back(s);
  }
  return out;
}

}  // namespace shutter::node
