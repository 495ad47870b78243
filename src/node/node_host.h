#ifndef SHUTTER_NODE_NODE_HOST_H_
#define SHUTTER_NODE_NODE_HOST_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/latency_recorder.h"
#include "partition/partition_store.h"

namespace shutter::node {

// The partitions a node hosts. Each is its own RocksDB database under
// "<data_dir>/partitions/<id, 5 digits>". Partitions listed as led take
// leadership in TakeLeadership(), which durably increases their epoch (a
// daemon calls it only once it serves and is registered, so a start that
// fails early leaves every epoch as it was).
//
// A store is reached through a reference (Acquire) held for one operation,
// so that a restore can replace it: BeginRestore refuses writes,
// SwapInRestored closes the live store once the last reference is gone and
// atomically exchanges it with the restored one (renameat2
// RENAME_EXCHANGE), so a crash leaves either the complete old store or the
// complete new one under the live path; Open sweeps what a crash left.
//
// Thread-safe after Open(): the set of partitions is fixed.
class NodeHost {
 public:
  struct Options {
    std::string data_dir;
    std::vector<uint32_t> partitions;
    // Subset of `partitions` this node leads.
    std::set<uint32_t> leader_for;
  };

  struct PartitionStatus {
    uint32_t partition_id = 0;
    bool leader = false;
    uint64_t leader_epoch = 0;
    uint64_t applied_index = 0;
    uint64_t approximate_size_bytes = 0;
    bool restoring = false;
  };

  using StoreRef = std::shared_ptr<partition::PartitionStore>;

  // Opens every partition (creating missing ones), as followers, after
  // sweeping what an interrupted restore left (see the class comment).
  // INVALID_ARGUMENT if leader_for names a partition not in `partitions`.
  static absl::StatusOr<std::unique_ptr<NodeHost>> Open(const Options& options);

  // Takes leadership of every partition in leader_for (durably raising its
  // epoch). Call once.
  absl::Status TakeLeadership();

  // A reference to the partition's store, for one operation. NOT_FOUND if
  // the partition is not hosted here; UNAVAILABLE during the moment a
  // restore swaps it.
  absl::StatusOr<StoreRef> Acquire(uint32_t partition_id) const;
  // Acquire, for work that needs this node to lead the partition at
  // `expected_epoch`: errors carry an ErrorReason (NOT_HOSTED, NOT_LEADER,
  // STALE_EPOCH; NODE_BUSY while a restore swaps the store) and name
  // `node_id` and both epochs.
  absl::StatusOr<StoreRef> AcquireLed(uint32_t partition_id,
                                      uint64_t expected_epoch,
                                      const std::string& node_id) const;
  // As Acquire, nullptr on error (tests).
  StoreRef Find(uint32_t partition_id) const;

  std::vector<PartitionStatus> Status() const;
  // (partition, leader, epoch) of every hosted partition, by id: what
  // Status() says of leadership, without the sizes it reads from RocksDB
  // (a node's keep-alive heartbeat needs only this).
  std::vector<std::tuple<uint32_t, bool, uint64_t>> Leadership() const;

  const std::string& data_dir() const { return data_dir_; }

  // Restores. BeginRestore marks the partition as being restored and
  // refuses its writes (UNAVAILABLE, `reason`) until EndRestore or a
  // successful SwapInRestored; FAILED_PRECONDITION if a restore is already
  // in progress; NOT_FOUND if not hosted.
  absl::Status BeginRestore(uint32_t partition_id, const std::string& reason);
  void EndRestore(uint32_t partition_id);
  // Where a restore assembles the partition's new store (same directory as
  // the live one, so the swap is one rename).
  std::string RestoreStagingPath(uint32_t partition_id) const;
  std::string LivePath(uint32_t partition_id) const;
  // Replaces the live store with the database at RestoreStagingPath (which
  // must carry the epoch the partition is to have before it retakes
  // leadership): waits up to `drain` for references to the live store to
  // end, closes it, exchanges the directories, fsyncs, reopens, retakes
  // leadership if it was the leader (so the epoch rises), allows writes,
  // then removes the old store. `fault`, if set, is called with
  // "restore-swapped" right after the exchange (tests kill the process
  // there). The partition is never left without an open store: a failure
  // before the exchange reopens the old store (UNAVAILABLE if references
  // did not end in time); once exchanged, the restored store is opened and
  // fenced even if the directory sync failed (that error is returned,
  // saying the restored store is live), and one that does not open is
  // exchanged back for the old.
  absl::Status SwapInRestored(
      uint32_t partition_id, absl::Duration drain,
      const std::function<void(const char*)>& fault = nullptr);

  // Tests: replaces fs::SyncDir where a restore syncs the partitions
  // directory after its exchange (to inject a failure there). Call before
  // any restore.
  void SetSyncDirAfterSwapForTesting(
      std::function<absl::Status(const std::string& dir)> sync) {
    sync_dir_after_swap_ = std::move(sync);
  }

  // `listener` is called (on the changing thread, without the host's locks)
  // after a partition's role or epoch changed through the host: a restore
  // that retook leadership, or NotifyRolesChanged. The daemon points it at
  // Heartbeater::ReportSoon. Replaces the previous listener; any thread.
  void SetRolesChangedListener(std::function<void()> listener)
      ABSL_LOCKS_EXCLUDED(listener_mu_);
  // For code that changed a store's role itself (PartitionStore's
  // TakeLeadership / StepDown on an Acquire'd store): calls the listener.
  void NotifyRolesChanged() const ABSL_LOCKS_EXCLUDED(listener_mu_);

  // Latency of every successful write to any of the node's partitions
  // (the node's foreground write latency; see LoadMonitor).
  LatencyRecorder* write_latency() const { return &write_latency_; }
  // RocksDB write stalls of the node's partitions.
  const partition::WriteStallStats& write_stalls() const {
    return write_stalls_;
  }

 private:
  struct Slot {
    mutable absl::Mutex mu;
    StoreRef store ABSL_GUARDED_BY(mu);
    // Notified when the store `store` held is destroyed.
    std::shared_ptr<absl::Notification> closed ABSL_GUARDED_BY(mu);
    bool restoring ABSL_GUARDED_BY(mu) = false;
    // What Status() last reported, repeated while the store is swapped.
    PartitionStatus last ABSL_GUARDED_BY(mu);
  };

  mutable absl::Mutex listener_mu_;
  std::function<void()> roles_changed_ ABSL_GUARDED_BY(listener_mu_);

  explicit NodeHost(const Options& options)
      : data_dir_(options.data_dir), leader_for_(options.leader_for) {}
  absl::StatusOr<Slot*> FindSlot(uint32_t partition_id) const;
  // Opens the store at the live path and installs it in `slot`.
  absl::Status OpenInto(uint32_t partition_id, Slot& slot)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(slot.mu);

  const std::string data_dir_;
  const std::set<uint32_t> leader_for_;
  // See SetSyncDirAfterSwapForTesting.
  std::function<absl::Status(const std::string&)> sync_dir_after_swap_;
  std::map<uint32_t, std::unique_ptr<Slot>> slots_;
  mutable LatencyRecorder write_latency_;
  partition::WriteStallStats write_stalls_;
};

}  // namespace shutter::node

#endif  // SHUTTER_NODE_NODE_HOST_H_
