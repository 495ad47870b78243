#include "node/node_host.h"

#include <fcntl.h>
#include <stdio.h>

#include <cerrno>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/error_reason.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "spdlog/spdlog.h"

namespace shutter::node {

namespace {
// The restore's fallback where RENAME_EXCHANGE is not supported: the old
// store is moved here, then the new one into place.
std::string AsidePath(const std::string& live) { return live + ".aside"; }

// Exchanges two directories atomically. EINVAL/ENOSYS: not supported here.
int ExchangeDirs(const std::string& a, const std::string& b) {
  return ::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE);
}

// Puts the store at `staged` at `live` and the one at `live` at `staged`.
// On error the store that was at `live` is there again (or, if even that
// failed, set aside where NodeHost::Open puts it back).
absl::Status SwapDirs(const std::string& staged, const std::string& live) {
  if (ExchangeDirs(staged, live) == 0) return absl::OkStatus();
  if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
    return fs::ErrnoStatus("exchange with " + live, staged);
  }
  // No RENAME_EXCHANGE on this filesystem: two renames; Open puts the old
  // store back if a crash comes between them.
  const std::string aside = AsidePath(live);
  if (::rename(live.c_str(), aside.c_str()) != 0) {
    return fs::ErrnoStatus("set aside", live);
  }
  if (::rename(staged.c_str(), live.c_str()) != 0) {
    absl::Status s = fs::ErrnoStatus("rename into " + live, staged);
    if (::rename(aside.c_str(), live.c_str()) != 0) {
      return absl::DataLossError(
          absl::StrCat(s.message(), "; the old store stays at ", aside,
                       " (the node's next start puts it back)"));
    }
    return s;
  }
  if (::rename(aside.c_str(), staged.c_str()) != 0) {
    // Swapped; only the old store's name is wrong: remove it there.
    fs::RemoveAll(aside).IgnoreError();
  }
  return absl::OkStatus();
}
}  // namespace

std::string NodeHost::LivePath(uint32_t partition_id) const {
  return absl::StrFormat("%s/partitions/%05u", data_dir_, partition_id);
}

std::string NodeHost::RestoreStagingPath(uint32_t partition_id) const {
  return absl::StrFormat("%s/partitions/.restore-%05u", data_dir_,
                         partition_id);
}

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
    // What an interrupted restore left: its staging directory holds either
    // an incomplete new store (before the exchange) or the old one (after
    // it); the live path holds the complete store either way. With the
    // two-rename fallback, a missing live store is the old one set aside.
    const std::string live = host->LivePath(id);
    const std::string aside = AsidePath(live);
    if (!fs::Exists(live) && fs::Exists(aside)) {
      spdlog::warn(
          "partition {}: an interrupted restore set the store aside; "
          "putting it back",
          id);
      if (::rename(aside.c_str(), live.c_str()) != 0) {
        return fs::ErrnoStatus("rename to " + live, aside);
      }
    }
    for (const std::string& leftover : {host->RestoreStagingPath(id), aside}) {
      if (fs::Exists(leftover)) {
        spdlog::warn("partition {}: removing {} left by an interrupted restore",
                     id, leftover);
        RETURN_IF_ERROR(fs::RemoveAll(leftover));
      }
    }
    RETURN_IF_ERROR(fs::SyncDir(options.data_dir + "/partitions"));
    auto slot = std::make_unique<Slot>();
    {
      absl::MutexLock l(&slot->mu);
      RETURN_IF_ERROR(host->OpenInto(id, *slot));
    }
    host->slots_[id] = std::move(slot);
  }
  return host;
}

absl::Status NodeHost::OpenInto(uint32_t partition_id, Slot& slot) {
  partition::PartitionStore::Options so;
  so.partition_id = partition_id;
  so.path = LivePath(partition_id);
  so.write_latency = &write_latency_;
  so.write_stalls = &write_stalls_;
  ASSIGN_OR_RETURN(std::unique_ptr<partition::PartitionStore> store,
                   partition::PartitionStore::Open(so));
  auto closed = std::make_shared<absl::Notification>();
  slot.closed = closed;
  slot.store =
      StoreRef(store.release(), [closed](partition::PartitionStore* s) {
        delete s;
        closed->Notify();
      });
  return absl::OkStatus();
}

absl::Status NodeHost::TakeLeadership() {
  for (uint32_t id : leader_for_) {
    ASSIGN_OR_RETURN(StoreRef store, Acquire(id));
    ASSIGN_OR_RETURN(uint64_t epoch, store->TakeLeadership());
    spdlog::info("partition {}: leader at epoch {} (applied index {})", id,
                 epoch, store->meta().applied_index);
  }
  return absl::OkStatus();
}

void NodeHost::SetRolesChangedListener(std::function<void()> listener) {
  absl::MutexLock l(&listener_mu_);
  roles_changed_ = std::move(listener);
}

void NodeHost::NotifyRolesChanged() const {
  std::function<void()> listener;
  {
    absl::MutexLock l(&listener_mu_);
    listener = roles_changed_;
  }
  if (listener) listener();
}

absl::StatusOr<NodeHost::Slot*> NodeHost::FindSlot(
    uint32_t partition_id) const {
  auto it = slots_.find(partition_id);
  if (it == slots_.end()) {
    return absl::NotFoundError(absl::StrCat("partition ", partition_id,
                                            " is not hosted on this node"));
  }
  return it->second.get();
}

absl::StatusOr<NodeHost::StoreRef> NodeHost::Acquire(
    uint32_t partition_id) const {
  ASSIGN_OR_RETURN(Slot * slot, FindSlot(partition_id));
  absl::MutexLock l(&slot->mu);
  if (slot->store == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("partition ", partition_id,
                     " is being swapped for its restored store; retry"));
  }
  return slot->store;
}

absl::StatusOr<NodeHost::StoreRef> NodeHost::AcquireLed(
    uint32_t partition_id, uint64_t expected_epoch,
    const std::string& node_id) const {
  auto store = Acquire(partition_id);
  if (absl::IsNotFound(store.status())) {
    return WithReason(
        absl::NotFoundError(absl::StrCat(
            "node ", node_id, " does not host partition ", partition_id)),
        ErrorReason::kNotHosted);
  }
  if (!store.ok()) return WithReason(store.status(), ErrorReason::kNodeBusy);
  const uint64_t epoch = (*store)->meta().leader_epoch;
  if (!(*store)->is_leader()) {
    return WithReason(
        absl::FailedPreconditionError(absl::StrCat(
            "node ", node_id, " is not the leader of partition ", partition_id,
            " (its last epoch ", epoch, ", expected ", expected_epoch, ")")),
        ErrorReason::kNotLeader);
  }
  if (epoch != expected_epoch) {
    return WithReason(absl::FailedPreconditionError(absl::StrCat(
                          "stale leader epoch for partition ", partition_id,
                          ": request expects epoch ", expected_epoch, ", node ",
                          node_id, " leads at epoch ", epoch)),
                      ErrorReason::kStaleEpoch);
  }
  return store;
}

NodeHost::StoreRef NodeHost::Find(uint32_t partition_id) const {
  auto s = Acquire(partition_id);
  return s.ok() ? *std::move(s) : nullptr;
}

std::vector<NodeHost::PartitionStatus> NodeHost::Status() const {
  std::vector<PartitionStatus> out;
  out.reserve(slots_.size());
  for (const auto& [id, slot] : slots_) {
    StoreRef store;
    {
      absl::MutexLock l(&slot->mu);
      store = slot->store;
      if (store == nullptr) {
        // Mid-swap: the last report stands, marked as restoring.
        PartitionStatus s = slot->last;
        s.partition_id = id;
        s.restoring = true;
        out.push_back(s);
        continue;
      }
    }
    PartitionStatus s;
    s.partition_id = id;
    partition::PartitionMeta m = store->meta();
    s.leader = store->is_leader();
    s.leader_epoch = m.leader_epoch;
    s.applied_index = m.applied_index;
    s.approximate_size_bytes = store->ApproximateSizeBytes();
    absl::MutexLock l(&slot->mu);
    s.restoring = slot->restoring;
    slot->last = s;
    out.push_back(s);
  }
  return out;
}

std::vector<std::tuple<uint32_t, bool, uint64_t>> NodeHost::Leadership() const {
  std::vector<std::tuple<uint32_t, bool, uint64_t>> out;
  out.reserve(slots_.size());
  for (const auto& [id, slot] : slots_) {
    StoreRef store;
    {
      absl::MutexLock l(&slot->mu);
      store = slot->store;
      if (store == nullptr) {  // mid-swap: as Status() reports it
        out.emplace_back(id, slot->last.leader, slot->last.leader_epoch);
        continue;
      }
    }
    out.emplace_back(id, store->is_leader(), store->meta().leader_epoch);
  }
  return out;
}

absl::Status NodeHost::BeginRestore(uint32_t partition_id,
                                    const std::string& reason) {
  ASSIGN_OR_RETURN(Slot * slot, FindSlot(partition_id));
  StoreRef store;
  {
    absl::MutexLock l(&slot->mu);
    if (slot->restoring) {
      return absl::FailedPreconditionError(absl::StrCat(
          "partition ", partition_id, " is already being restored"));
    }
    slot->restoring = true;
    store = slot->store;
  }
  if (store != nullptr) store->RefuseWrites(reason);
  return absl::OkStatus();
}

void NodeHost::EndRestore(uint32_t partition_id) {
  auto slot = FindSlot(partition_id);
  if (!slot.ok()) return;
  StoreRef store;
  {
    absl::MutexLock l(&(*slot)->mu);
    (*slot)->restoring = false;
    store = (*slot)->store;
  }
  if (store != nullptr) store->AllowWrites();
}

absl::Status NodeHost::SwapInRestored(
    uint32_t partition_id, absl::Duration drain,
    const std::function<void(const char*)>& fault) {
  ASSIGN_OR_RETURN(Slot * slot, FindSlot(partition_id));
  const std::string live = LivePath(partition_id);
  const std::string staged = RestoreStagingPath(partition_id);
  std::weak_ptr<partition::PartitionStore> weak;
  std::shared_ptr<absl::Notification> closed;
  bool was_leader = false;
  {
    // From here Acquire answers UNAVAILABLE: new operations wait for the
    // restored store; those in progress keep their reference to the old one.
    absl::MutexLock l(&slot->mu);
    if (slot->store == nullptr) {
      return absl::FailedPreconditionError("partition store is not open");
    }
    was_leader = slot->store->is_leader();
    weak = slot->store;
    closed = slot->closed;
    slot->store = nullptr;
  }
  // Whichever store ends up live, a leader's epoch rose if it was reopened
  // (a restore that gives up before closing it reports it unchanged: a
  // heartbeat early, no harm).
  absl::Cleanup notify = [this, was_leader] {
    if (was_leader) NotifyRolesChanged();
  };
  if (!closed->WaitForNotificationWithTimeout(drain)) {
    absl::MutexLock l(&slot->mu);
    slot->store = weak.lock();
    if (slot->store != nullptr) {
      return absl::UnavailableError(
          absl::StrCat("partition ", partition_id,
                       ": operations on the live store did not "
                       "end within ",
                       absl::FormatDuration(drain), "; the store is kept"));
    }
    // Closed just now: carry on.
  }
  // The old store is closed. One atomic step makes the new one live.
  // Opens whatever store is at the live path into the slot (held locked),
  // leading again if the old one led: its epoch rises, as at any
  // leadership change.
  auto reopen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(slot->mu) {
    RETURN_IF_ERROR(OpenInto(partition_id, *slot));
    if (was_leader) return slot->store->TakeLeadership().status();
    return absl::OkStatus();
  };
  if (absl::Status s = SwapDirs(staged, live); !s.ok()) {
    absl::MutexLock l(&slot->mu);
    absl::Status reopened = reopen();
    if (!reopened.ok()) {
      return absl::InternalError(
          absl::StrCat(StatusText(s), "; reopening the old store failed too: ",
                       StatusText(reopened), "; the partition is unavailable"));
    }
    return s;
  }
  if (fault) fault("restore-swapped");
  // From here the restored store is the live one on disk: whatever fails
  // below, the partition gets an open, fenced store.
  const std::string dir = data_dir_ + "/partitions";
  const absl::Status synced =
      sync_dir_after_swap_ ? sync_dir_after_swap_(dir) : fs::SyncDir(dir);
  StoreRef store;
  {
    absl::MutexLock l(&slot->mu);
    if (absl::Status opened = OpenInto(partition_id, *slot); !opened.ok()) {
      // Put the old store back rather than leave the partition empty.
      absl::Status back = SwapDirs(staged, live);
      if (back.ok()) back = reopen();
      if (!back.ok()) {
        return absl::InternalError(absl::StrCat(
            "the restored store did not open: ", StatusText(opened),
            "; putting the old one back failed: ", StatusText(back),
            "; the partition is unavailable"));
      }
      return absl::InternalError(
          absl::StrCat("the restored store did not open: ", StatusText(opened),
                       "; the old store is back"));
    }
    slot->restoring = false;
    store = slot->store;
  }
  if (was_leader) {
    // A restore is a leadership event: the epoch rises above the one
    // stamped into the restored store (the old store's), fencing writers
    // of the old epoch.
    ASSIGN_OR_RETURN(uint64_t epoch, store->TakeLeadership());
    spdlog::info("partition {}: restored store live, leader at epoch {}",
                 partition_id, epoch);
  }
  // The old store, now under the staging name.
  absl::Status removed = fs::RemoveAll(staged);
  if (!removed.ok()) {
    spdlog::warn("partition {}: could not remove the old store: {}",
                 partition_id, removed.ToString());
  }
  if (!synced.ok()) {
    return absl::Status(
        synced.code(),
        absl::StrCat("the restored store is live, but syncing ", dir,
                     " after the swap failed (a crash before it reaches the "
                     "disk may bring the old store back): ",
                     synced.message()));
  }
  return absl::OkStatus();
}

}  // namespace shutter::node
