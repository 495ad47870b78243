#include "controller/node_registry.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {

using shutter::v1::HeartbeatRequest;
using shutter::v1::NodeInfo;
using shutter::v1::PartitionInfo;

NodeRegistry::NodeRegistry(const Options& options, Clock* clock)
    : options_(options), clock_(clock) {}

absl::Status NodeRegistry::Heartbeat(const HeartbeatRequest& req,
                                     bool* full_report_needed,
                                     bool* capacity_changed, bool* registered) {
  if (full_report_needed != nullptr) *full_report_needed = false;
  if (capacity_changed != nullptr) *capacity_changed = false;
  if (registered != nullptr) *registered = false;
  RETURN_IF_ERROR(CheckSafeId("heartbeat: node_id", req.node_id()));
  if (req.address().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("heartbeat from ", req.node_id(), ": empty address"));
  }
  if (req.address().size() > 256 || !IsValidUtf8(req.address()) ||
      !CheckPrintableText("address", req.address()).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("heartbeat from ", req.node_id(), ": address ",
                     Quote(req.address()), " is not host:port"));
  }
  if (req.instance().instance_id().empty() ||
      req.instance().instance_id().size() > 64) {
    return absl::InvalidArgumentError(absl::StrCat(
        "heartbeat from ", req.node_id(),
        ": no node instance (the node must send its incarnation)"));
  }
  if (!req.leaving() && !options_.repository_id.empty() &&
      req.repository_id() != options_.repository_id) {
    std::string msg = absl::StrCat(
        "node ", req.node_id(), " at ", Quote(req.address()),
        " uses the snapshot repository ", Quote(req.repository(), 200),
        req.repository_id().empty()
            ? " which has no REPOSITORY_ID (nothing created it)"
            : absl::StrCat(" with id ", Quote(req.repository_id())),
        ", but the controller's is ", options_.repository, " with id ",
        options_.repository_id,
        ": --repository must name the same repository on the controller and "
        "every node");
    spdlog::warn("refused heartbeat: {}", msg);
    return absl::FailedPreconditionError(msg);
  }
  if (req.checkpoint_capacity() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "heartbeat from ", req.node_id(), ": checkpoint_capacity is 0"));
  }
  std::set<uint32_t> seen;
  for (const auto& p : req.partitions()) {
    if (!seen.insert(p.partition_id()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("heartbeat from ", req.node_id(), ": partition ",
                       p.partition_id(), " listed twice"));
    }
  }
  absl::MutexLock l(&mu_);
  auto it = nodes_.find(req.node_id());
  if (req.leaving()) {
    // A clean shutdown: release the incarnation (only the registered one
    // may release itself).
    if (it != nodes_.end() &&
        it->second.instance_id == req.instance().instance_id() &&
        it->second.start_count == req.instance().start_count() &&
        !it->second.left) {
      it->second.left = true;
      spdlog::info(
          "node {} (incarnation {}, start {}) is leaving: released (a new "
          "incarnation of the node id is accepted at once; the same one "
          "coming back is the same node)",
          req.node_id(), Quote(req.instance().instance_id()),
          req.instance().start_count());
    }
    return absl::OkStatus();
  }
  if (it != nodes_.end()) {
    const NodeState& old = it->second;
    if (old.instance_id != req.instance().instance_id()) {
      const absl::Duration silent = clock_->Now() - old.last_heartbeat;
      if (old.left) {
        spdlog::info(
            "node {}: incarnation {} left cleanly; accepting incarnation {} "
            "at {} at once",
            req.node_id(), old.instance_id, Quote(req.instance().instance_id()),
            Quote(req.address()));
      } else if (AliveLocked(old) && silent >= options_.silent_after) {
        // Not demonstrably alive: probably crashed, or its disk was
        // replaced. The new incarnation waits, it is not refused.
        std::string msg = absl::StrFormat(
            "node id %s is registered to incarnation %s at %s, which has "
            "sent no heartbeat for %d ms (crashed, or its machine or disk "
            "was replaced); %s (incarnation %s) is accepted once that one "
            "has been silent for %s, in %d ms: retrying",
            req.node_id(), old.instance_id, Quote(old.address),
            absl::ToInt64Milliseconds(silent), Quote(req.address()),
            Quote(req.instance().instance_id()),
            absl::FormatDuration(options_.dead_after),
            absl::ToInt64Milliseconds(options_.dead_after - silent));
        spdlog::info("heartbeat deferred: {}", msg);
        return absl::UnavailableError(msg);
      } else if (AliveLocked(old)) {
        std::string msg = absl::StrFormat(
            "node id %s is in use by a live node at %s (incarnation %s, last "
            "heartbeat %d ms ago); refusing %s (incarnation %s). Two "
            "processes claim one node id: stop one. The other is accepted "
            "once %s has sent no heartbeat for %s",
            req.node_id(), Quote(old.address), old.instance_id,
            absl::ToInt64Milliseconds(clock_->Now() - old.last_heartbeat),
            Quote(req.address()), Quote(req.instance().instance_id()),
            req.node_id(), absl::FormatDuration(options_.dead_after));
        spdlog::warn("refused heartbeat: {}", msg);
        return absl::AlreadyExistsError(msg);
      }
      if (!old.left) {
        spdlog::warn(
            "node {} is now incarnation {} at {} (was {} at {}, dead since "
            "{} ms)",
            req.node_id(), Quote(req.instance().instance_id()),
            Quote(req.address()), old.instance_id, Quote(old.address),
            absl::ToInt64Milliseconds(clock_->Now() - old.last_heartbeat));
      }
    } else if (req.instance().start_count() < old.start_count) {
      std::string msg = absl::StrCat(
          "heartbeat from start ", req.instance().start_count(), " of node ",
          req.node_id(), " at ", Quote(req.address()), ", but start ",
          old.start_count, " at ", Quote(old.address),
          " has registered since: an older process of the same data "
          "directory is still running");
      spdlog::warn("refused heartbeat: {}", msg);
      return absl::FailedPreconditionError(msg);
    } else if (req.instance().start_count() > old.start_count &&
               !req.partitions_omitted()) {
      spdlog::info("node {} restarted (start {}, at {})", req.node_id(),
                   req.instance().start_count(), Quote(req.address()));
    }
  } else if (!req.partitions_omitted()) {
    spdlog::info("node {} registered: incarnation {} start {} at {}",
                 req.node_id(), Quote(req.instance().instance_id()),
                 req.instance().start_count(), Quote(req.address()));
  }
  if (req.partitions_omitted()) {
    auto known = nodes_.find(req.node_id());
    if (known == nodes_.end() ||
        known->second.instance_id != req.instance().instance_id() ||
        known->second.start_count != req.instance().start_count()) {
      if (full_report_needed != nullptr) *full_report_needed = true;
      return absl::OkStatus();
    }
    NodeState& n = known->second;
    if (registered != nullptr) *registered = n.address != req.address();
    n.address = req.address();
    if (capacity_changed != nullptr) {
      *capacity_changed = n.capacity != req.checkpoint_capacity() ||
                          n.queues_checkpoints != req.queues_checkpoints();
    }
    n.capacity = req.checkpoint_capacity();
    n.queues_checkpoints = req.queues_checkpoints();
    n.last_heartbeat = clock_->Now();
    n.left = false;
    return absl::OkStatus();
  }
  NodeState fresh;
  fresh.instance_id = req.instance().instance_id();
  fresh.start_count = req.instance().start_count();
  fresh.address = req.address();
  fresh.capacity = req.checkpoint_capacity();
  fresh.queues_checkpoints = req.queues_checkpoints();
  fresh.last_heartbeat = clock_->Now();
  fresh.partitions.assign(req.partitions().begin(), req.partitions().end());
  fresh.index.reserve(fresh.partitions.size());
  for (uint32_t i = 0; i < fresh.partitions.size(); ++i) {
    fresh.index[fresh.partitions[i].partition_id()] = i;
  }
  auto old = nodes_.find(req.node_id());
  if (old != nodes_.end() && old->second.instance_id == fresh.instance_id &&
      old->second.start_count == fresh.start_count) {
    // Epochs of one process only grow: a report built before a change the
    // controller already learned from a task's answer (ObservePartition:
    // a restore's swap raised the epoch) must not take it back. The next
    // report carries the new epoch.
    for (auto& p : fresh.partitions) {
      auto at = old->second.index.find(p.partition_id());
      if (at == old->second.index.end()) continue;
      const auto& known = old->second.partitions[at->second];
      if (known.leader_epoch() > p.leader_epoch()) {
        p.set_role(known.role());
        p.set_leader_epoch(known.leader_epoch());
        p.set_applied_index(std::max(known.applied_index(), p.applied_index()));
      }
    }
  }
  if (capacity_changed != nullptr) {
    *capacity_changed =
        old == nodes_.end() || old->second.capacity != fresh.capacity ||
        old->second.queues_checkpoints != fresh.queues_checkpoints;
  }
  if (registered != nullptr) {
    *registered = old == nodes_.end() ||
                  old->second.instance_id != fresh.instance_id ||
                  old->second.start_count != fresh.start_count ||
                  old->second.address != fresh.address;
  }
  ReindexLocked(req.node_id(), old == nodes_.end() ? nullptr : &old->second,
                &fresh);
  nodes_[req.node_id()] = std::move(fresh);
  return absl::OkStatus();
}

void NodeRegistry::ReindexLocked(const std::string& id,
                                 const NodeState* old_state,
                                 const NodeState* new_state) {
  // Usually the same set: only differences touch the index.
  if (old_state != nullptr) {
    for (const auto& p : old_state->partitions) {
      if (new_state != nullptr && new_state->index.count(p.partition_id())) {
        continue;
      }
      auto it = partition_nodes_.find(p.partition_id());
      if (it == partition_nodes_.end()) continue;
      auto& ids = it->second;
      ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
      if (ids.empty()) partition_nodes_.erase(it);
    }
  }
  if (new_state != nullptr) {
    for (const auto& p : new_state->partitions) {
      if (old_state != nullptr && old_state->index.count(p.partition_id())) {
        continue;
      }
      auto& ids = partition_nodes_[p.partition_id()];
      ids.insert(std::lower_bound(ids.begin(), ids.end(), id), id);
    }
  }
}

bool NodeRegistry::AliveLocked(const NodeState& n) const {
  return clock_->Now() - n.last_heartbeat < options_.dead_after;
}

NodeInfo NodeRegistry::InfoLocked(const std::string& id,
                                  const NodeState& n) const {
  NodeInfo info;
  info.set_node_id(id);
  info.set_address(n.address);
  info.set_checkpoint_capacity(n.capacity);
  info.set_alive(AliveLocked(n));
  info.set_millis_since_heartbeat(
      absl::ToInt64Milliseconds(clock_->Now() - n.last_heartbeat));
  info.set_partitions_hosted(n.partitions.size());
  uint32_t led = 0;
  for (const auto& p : n.partitions) {
    if (p.role() == shutter::v1::PARTITION_ROLE_LEADER) ++led;
  }
  info.set_partitions_led(led);
  info.set_instance_id(n.instance_id);
  info.set_start_count(n.start_count);
  return info;
}

std::vector<NodeInfo> NodeRegistry::ListNodes() const {
  absl::ReaderMutexLock l(&mu_);
  std::vector<NodeInfo> out;
  for (const auto& [id, n] : nodes_) out.push_back(InfoLocked(id, n));
  return out;
}

absl::StatusOr<NodeInfo> NodeRegistry::RemoveNode(const std::string& node_id) {
  RETURN_IF_ERROR(CheckSafeId("node id", node_id));
  absl::MutexLock l(&mu_);
  auto it = nodes_.find(node_id);
  if (it == nodes_.end()) {
    return absl::NotFoundError(absl::StrCat("no node ", node_id));
  }
  NodeInfo info = InfoLocked(node_id, it->second);
  if (info.alive()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "node ", node_id, " is alive (last heartbeat ",
        info.millis_since_heartbeat(),
        " ms ago); stop it first, then remove it once it is listed as dead"));
  }
  ReindexLocked(node_id, &it->second, nullptr);
  nodes_.erase(it);
  spdlog::info("node {} removed ({} partitions it reported are forgotten)",
               node_id, info.partitions_hosted());
  return info;
}

bool NodeRegistry::IsAlive(const std::string& node_id) const {
  absl::ReaderMutexLock l(&mu_);
  auto it = nodes_.find(node_id);
  return it != nodes_.end() && AliveLocked(it->second);
}

absl::InlinedVector<NodeRegistry::Claim, 1> NodeRegistry::BestClaimsLocked(
    const std::vector<std::string>& reporters, uint32_t partition_id) const {
  absl::InlinedVector<Claim, 1> best;
  for (const std::string& id : reporters) {
    const NodeState& n = nodes_.at(id);
    if (!AliveLocked(n)) continue;
    const auto& p = n.partitions[n.index.at(partition_id)];
    if (p.role() != shutter::v1::PARTITION_ROLE_LEADER) continue;
    if (!best.empty()) {
      const uint64_t best_epoch = best.front().partition->leader_epoch();
      if (p.leader_epoch() < best_epoch) continue;
      if (p.leader_epoch() > best_epoch) best.clear();
    }
    best.push_back({&id, &n, &p});
  }
  return best;
}

PartitionInfo NodeRegistry::DescribeLocked(uint32_t partition_id) const {
  PartitionInfo info;
  info.set_partition_id(partition_id);
  auto reporters = partition_nodes_.find(partition_id);
  if (reporters == partition_nodes_.end()) return info;
  for (const std::string& id : reporters->second) {
    const NodeState& n = nodes_.at(id);
    const auto& p = n.partitions[n.index.at(partition_id)];
    auto* r = info.add_replicas();
    r->set_node_id(id);
    r->set_role(p.role());
    r->set_leader_epoch(p.leader_epoch());
    r->set_applied_index(p.applied_index());
    r->set_approximate_size_bytes(p.approximate_size_bytes());
    r->set_alive(AliveLocked(n));
  }
  // Highest epoch among live leadership claims, and who claims it.
  const auto best = BestClaimsLocked(reporters->second, partition_id);
  if (best.size() == 1) {
    const Claim& c = best.front();
    info.set_leader_node_id(*c.node_id);
    info.set_leader_address(c.node->address);
    info.set_leader_epoch(c.partition->leader_epoch());
    info.set_applied_index(c.partition->applied_index());
    info.set_approximate_size_bytes(c.partition->approximate_size_bytes());
  } else if (best.size() > 1) {
    info.set_conflict(true);
    info.set_leader_epoch(best.front().partition->leader_epoch());
  }
  return info;
}

std::vector<uint32_t> NodeRegistry::SortedIdsLocked() const {
  std::vector<uint32_t> ids;
  ids.reserve(partition_nodes_.size());
  for (const auto& entry : partition_nodes_) ids.push_back(entry.first);
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::vector<uint32_t> NodeRegistry::PartitionIds() const {
  absl::ReaderMutexLock l(&mu_);
  return SortedIdsLocked();
}

size_t NodeRegistry::PartitionCount() const {
  absl::ReaderMutexLock l(&mu_);
  return partition_nodes_.size();
}

std::vector<PartitionInfo> NodeRegistry::ListPartitions() const {
  absl::ReaderMutexLock l(&mu_);
  const std::vector<uint32_t> ids = SortedIdsLocked();
  std::vector<PartitionInfo> out;
  out.reserve(ids.size());
  for (uint32_t id : ids) out.push_back(DescribeLocked(id));
  return out;
}

bool NodeRegistry::ObservePartition(const std::string& node_id,
                                    const std::string& instance_id,
                                    uint32_t partition_id, uint64_t epoch,
                                    uint64_t applied_index) {
  absl::MutexLock l(&mu_);
  auto it = nodes_.find(node_id);
  if (it == nodes_.end() || it->second.instance_id != instance_id) {
    return false;
  }
  NodeState& n = it->second;
  auto at = n.index.find(partition_id);
  if (at == n.index.end()) return false;
  shutter::v1::HostedPartition& p = n.partitions[at->second];
  if (epoch < p.leader_epoch() ||
      (epoch == p.leader_epoch() && applied_index <= p.applied_index() &&
       p.role() == shutter::v1::PARTITION_ROLE_LEADER)) {
    return false;
  }
  p.set_role(shutter::v1::PARTITION_ROLE_LEADER);
  p.set_leader_epoch(epoch);
  p.set_applied_index(applied_index);
  return true;
}

absl::StatusOr<NodeRegistry::Leader> NodeRegistry::ResolveLeader(
    uint32_t partition_id) const {
  absl::ReaderMutexLock l(&mu_);
  auto reporters = partition_nodes_.find(partition_id);
  if (reporters == partition_nodes_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no node reports partition ", partition_id));
  }
  const auto best = BestClaimsLocked(reporters->second, partition_id);
  if (best.size() > 1) {
    std::vector<std::string> who;
    for (const Claim& c : best) who.push_back(*c.node_id);
    return absl::FailedPreconditionError(absl::StrCat(
        "partition ", partition_id, " has conflicting leaders at epoch ",
        best.front().partition->leader_epoch(), ": ",
        absl::StrJoin(who, ", ")));
  }
  if (best.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("partition ", partition_id, " has no live leader"));
  }
  const Claim& c = best.front();
  Leader leader;
  leader.node_id = *c.node_id;
  leader.instance_id = c.node->instance_id;
  leader.address = c.node->address;
  leader.epoch = c.partition->leader_epoch();
  leader.approximate_size_bytes = c.partition->approximate_size_bytes();
  return leader;
}

absl::StatusOr<shutter::v1::NodeInfo> NodeRegistry::Node(
    const std::string& node_id) const {
  absl::ReaderMutexLock l(&mu_);
  auto it = nodes_.find(node_id);
  if (it == nodes_.end()) {
    return absl::NotFoundError(absl::StrCat("no node ", Quote(node_id)));
  }
  return InfoLocked(it->first, it->second);
}

absl::StatusOr<uint32_t> NodeRegistry::Capacity(
    const std::string& node_id, bool* queues_checkpoints) const {
  absl::ReaderMutexLock l(&mu_);
  auto it = nodes_.find(node_id);
  if (it == nodes_.end()) {
    return absl::NotFoundError(absl::StrCat("no node ", Quote(node_id)));
  }
  if (queues_checkpoints != nullptr) {
    *queues_checkpoints = it->second.queues_checkpoints;
  }
  return it->second.capacity;
}

absl::StatusOr<std::string> NodeRegistry::Address(
    const std::string& node_id) const {
  absl::ReaderMutexLock l(&mu_);
  auto it = nodes_.find(node_id);
  if (it == nodes_.end()) {
    return absl::NotFoundError(absl::StrCat("no node ", Quote(node_id)));
  }
  return it->second.address;
}

}  // namespace shutter::controller
