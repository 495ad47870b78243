#ifndef SHUTTER_CONTROLLER_NODE_REGISTRY_H_
#define SHUTTER_CONTROLLER_NODE_REGISTRY_H_

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "shutter/v1/admin.pb.h"
#include "shutter/v1/controller.pb.h"

namespace shutter::controller {

// The controller's view of the cluster, built from heartbeats: which nodes
// exist, whether they are alive, and who leads each partition.
//
// Rules:
//  - A node is alive while its last heartbeat is younger than dead_after.
//    Dead nodes are kept (listed as dead) until an operator removes them
//    (RemoveNode, refused while alive).
//  - A node id belongs to one incarnation at a time (NodeInstance): a
//    heartbeat from another incarnation is refused (ALREADY_EXISTS, naming
//    both addresses, logged) while the registered one is alive, and
//    replaces it once it is dead. Restarts of the registered incarnation
//    (same instance id, start count not lower) are the same node. So a
//    partition claim is only ever taken from the registered incarnation.
//  - A heartbeat from a node whose repository identity differs from
//    Options::repository_id (when set) is refused (FAILED_PRECONDITION).
//  - A heartbeat replaces everything known about that node's partitions.
//
// Cost: an index from partition to the nodes reporting it is kept current
// by heartbeats (O(the node's partitions) per heartbeat), so a leader
// lookup is O(reporters of that partition) and listing every partition is
// O(partitions), not O(partitions x nodes).
//  - The leader of a partition is the live node claiming leadership with
//    the highest epoch. If two or more live nodes claim the same highest
//    epoch the partition is in conflict and has no usable leader.
//
// Thread-safe. `clock` must outlive the registry.
class NodeRegistry {
 public:
  struct Options {
    absl::Duration dead_after = absl::Seconds(10);
    // The controller's repository identity and location; nodes must report
    // the same identity. Empty: not checked.
    std::string repository_id;
    std::string repository;
    // A registered incarnation silent for longer than this (but not yet
    // dead) no longer proves another process holds the node id: a new
    // incarnation is told to retry (UNAVAILABLE) until the old one is
    // dead, instead of being refused for good (ALREADY_EXISTS).
    absl::Duration silent_after = absl::Seconds(3);
  };

  struct Leader {
    std::string node_id;
    // The registered incarnation of node_id.
    std::string instance_id;
    std::string address;
    uint64_t epoch = 0;
    uint64_t approximate_size_bytes = 0;
  };

  NodeRegistry(const Options& options, Clock* clock);

  // Records a heartbeat. Refusals record nothing: INVALID_ARGUMENT for an
  // unsafe node id, an empty address, no instance, capacity 0 or a
  // partition listed twice; ALREADY_EXISTS for another live incarnation;
  // FAILED_PRECONDITION for another repository or an older start of the
  // registered incarnation.
  //
  // A keep-alive (partitions_omitted) from the registered incarnation and
  // start only refreshes liveness, address and capacity; from anyone else
  // it records nothing and sets *full_report_needed (if given).
  // *capacity_changed (if given) says whether the node's capacity (or
  // whether it queues checkpoints) differs from what was recorded (or the
  // node is new). *registered (if given)
  // says whether the heartbeat was recorded for a process the registry did
  // not have at that address: a new node, another incarnation or start, or
  // a new address (what the controller reaches the node by may be new).
  absl::Status Heartbeat(const shutter::v1::HeartbeatRequest& request,
                         bool* full_report_needed = nullptr,
                         bool* capacity_changed = nullptr,
                         bool* registered = nullptr) ABSL_LOCKS_EXCLUDED(mu_);

  // What a task's answer proved about a partition: the node's incarnation
  // `instance_id` now leads `partition_id` at `epoch` with `applied_index`
  // (a restore swapped the store in and took leadership at a new epoch).
  // Recorded at once, so that the registry agrees with a job that reports
  // it done, without waiting for the node's next heartbeat -- but only
  // for the registered incarnation of a node that reports the partition,
  // and only if `epoch` is not below the one last reported (a newer epoch
  // wins, as for heartbeats; a later full report overrides it either way).
  // Returns whether anything changed.
  bool ObservePartition(const std::string& node_id,
                        const std::string& instance_id, uint32_t partition_id,
                        uint64_t epoch, uint64_t applied_index)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Forgets a dead node. NOT_FOUND if unknown; FAILED_PRECONDITION if it is
  // alive. Returns the node as it was.
  absl::StatusOr<shutter::v1::NodeInfo> RemoveNode(const std::string& node_id)
      ABSL_LOCKS_EXCLUDED(mu_);

  // True if the node is registered and alive.
  bool IsAlive(const std::string& node_id) const ABSL_LOCKS_EXCLUDED(mu_);

  // Sorted by node id; checkpoints_in_flight is left 0 (the registry does
  // not know it).
  std::vector<shutter::v1::NodeInfo> ListNodes() const ABSL_LOCKS_EXCLUDED(mu_);

  // Every partition any known node reports, sorted by id.
  std::vector<shutter::v1::PartitionInfo> ListPartitions() const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Their ids alone, sorted, and their number: what a job or a metric needs,
  // without describing each (100,000 PartitionInfo messages).
  std::vector<uint32_t> PartitionIds() const ABSL_LOCKS_EXCLUDED(mu_);
  size_t PartitionCount() const ABSL_LOCKS_EXCLUDED(mu_);

  // NOT_FOUND if no node reports the partition; FAILED_PRECONDITION if no
  // live node leads it or leadership is in conflict (the message says which).
  absl::StatusOr<Leader> ResolveLeader(uint32_t partition_id) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Address last reported by the node; NOT_FOUND if unknown.
  absl::StatusOr<std::string> Address(const std::string& node_id) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // One node as ListNodes() describes it; NOT_FOUND if unknown.
  absl::StatusOr<shutter::v1::NodeInfo> Node(const std::string& node_id) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Capacity last reported by the node; NOT_FOUND if unknown. With
  // `queues_checkpoints`, also whether the node said it holds checkpoint
  // requests beyond its capacity (HeartbeatRequest.queues_checkpoints).
  absl::StatusOr<uint32_t> Capacity(const std::string& node_id,
                                    bool* queues_checkpoints = nullptr) const
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct NodeState {
    std::string instance_id;
    uint64_t start_count = 0;
    std::string address;
    uint32_t capacity = 0;
    bool queues_checkpoints = false;
    absl::Time last_heartbeat;
    // The incarnation said it was leaving (HeartbeatRequest.leaving): it
    // still counts as alive (it may come back as itself within
    // dead_after, a rolling restart), but another incarnation of the node
    // id is accepted at once (a replaced disk).
    bool left = false;
    std::vector<shutter::v1::HostedPartition> partitions;
    // Position of each partition in `partitions`.
    std::unordered_map<uint32_t, uint32_t> index;
  };

  // Moves node `id` in partition_nodes_ from old_state's partitions to
  // new_state's (either may be null).
  void ReindexLocked(const std::string& id, const NodeState* old_state,
                     const NodeState* new_state)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  bool AliveLocked(const NodeState& n) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  shutter::v1::NodeInfo InfoLocked(const std::string& id,
                                   const NodeState& n) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  shutter::v1::PartitionInfo DescribeLocked(uint32_t partition_id) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Every reported partition's id, sorted (the index is hashed).
  std::vector<uint32_t> SortedIdsLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // A live node's claim to lead a partition.
  struct Claim {
    const std::string* node_id;
    const NodeState* node;
    const shutter::v1::HostedPartition* partition;
  };
  // The live leadership claims on `partition_id`, reported by `reporters`,
  // at the highest epoch claimed: one (the leader), several (a conflict)
  // or none. Builds nothing: ResolveLeader runs twice per task.
  absl::InlinedVector<Claim, 1> BestClaimsLocked(
      const std::vector<std::string>& reporters, uint32_t partition_id) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const Options options_;
  Clock* const clock_;
  mutable absl::Mutex mu_;
  std::map<std::string, NodeState> nodes_ ABSL_GUARDED_BY(mu_);
  // Partition -> ids of the nodes reporting it (a handful each), ordered.
  // Hashed: looked up twice per task, at 100,000 partitions.
  absl::flat_hash_map<uint32_t, std::vector<std::string>> partition_nodes_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_NODE_REGISTRY_H_
