#include "node/partition_restorer.h"

#include <algorithm>
#include <atomic>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/error_reason.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "node/node_instance.h"
#include "partition/partition_store.h"
#include "spdlog/spdlog.h"

namespace shutter::node {

using shutter::v1::RestorePartitionRequest;
using shutter::v1::RestorePartitionResponse;

namespace {

// `s` with `reason`, its message prefixed with what was being done.
absl::Status Annotate(const absl::Status& s, const std::string& what,
                      ErrorReason reason) {
  ErrorReason r = GetErrorReason(s);
  return WithReason(
      absl::Status(s.code(), absl::StrCat(what, ": ", s.message())),
      r == ErrorReason::kUnspecified ? reason : r);
}
}  // namespace

std::string RestoreMarker(const std::string& restore_id,
                          const std::string& snapshot_id,
                          uint64_t applied_index) {
  return absl::StrCat(restore_id, " ", snapshot_id, " ", applied_index);
}

PartitionRestorer::PartitionRestorer(const Options& options, NodeHost* host,
                                     snapshot::Repository* repo, Clock* clock)
    : options_(options),
      host_(host),
      repo_(repo),
      clock_(clock),
      runner_({"restore", "", options.capacity, options.io_class, options.nice,
               [this](const absl::StatusOr<RestorePartitionResponse>& r) {
                 Finished(r);
               }}) {}

PartitionRestorer::~PartitionRestorer() { Shutdown(); }

absl::StatusOr<std::unique_ptr<PartitionRestorer>> PartitionRestorer::Create(
    const Options& options, NodeHost* host, snapshot::Repository* repo,
    Clock* clock) {
  if (options.capacity < 1 || options.parallel_files < 1) {
    return absl::InvalidArgumentError(
        "restore capacity and parallel files must be at least 1");
  }
  return std::unique_ptr<PartitionRestorer>(
      new PartitionRestorer(options, host, repo, clock));
}

void PartitionRestorer::Shutdown() { runner_.Shutdown(); }

void PartitionRestorer::Cancel(const std::string& restore_id) {
  runner_.Cancel(restore_id);
}

PartitionRestorer::Stats PartitionRestorer::GetStats() const {
  const auto run = runner_.GetStats();
  Stats stats;
  stats.in_flight = run.in_flight;
  stats.failed = run.failed;
  absl::MutexLock l(&mu_);
  stats.restored = restored_;
  stats.bytes = bytes_;
  return stats;
}

absl::Status PartitionRestorer::Admit(
    const RestorePartitionRequest& req) const {
  return AdmitPartitionWork(
      {{"restore_id", &req.restore_id()}, {"snapshot_id", &req.snapshot_id()}},
      options_.check_serving, req.expected_instance_id(), options_.instance_id,
      options_.node_id);
}

void PartitionRestorer::Restore(const RestorePartitionRequest& request,
                                Callback done) {
  absl::Status admitted = Admit(request);
  if (!admitted.ok()) {
    std::move(done)(admitted);
    return;
  }
  // A repeat of a restore in progress joins it.
  runner_.Run(request.restore_id(), request.partition_id(), std::move(done),
              [this, request] { return Run(request); });
}

absl::StatusOr<RestorePartitionResponse> PartitionRestorer::RestoreSync(
    const RestorePartitionRequest& request) {
  return AwaitResult<RestorePartitionResponse>(
      [&](Callback done) { Restore(request, std::move(done)); });
}

void PartitionRestorer::Finished(
    const absl::StatusOr<RestorePartitionResponse>& result) {
  if (!result.ok() || result->already_restored()) return;
  absl::MutexLock l(&mu_);
  ++restored_;
  bytes_ += result->manifest().total_bytes();
}

absl::StatusOr<RestorePartitionResponse> PartitionRestorer::Run(
    const RestorePartitionRequest& req) {
  RETURN_IF_ERROR(CheckNotCancelled(req.restore_id()));
  RETURN_IF_ERROR(Admit(req));
  const uint32_t p = req.partition_id();
  const std::string what = absl::StrCat("restore of partition ", p,
                                        " from snapshot ", req.snapshot_id());
  // Already done by this restore job (its answer was lost)? The marker is
  // in the store it installed; the epoch has risen since, so this comes
  // before the epoch check.
  if (auto any = host_->Acquire(p); any.ok()) {
    const partition::PartitionMeta meta = (*any)->meta();
    if (absl::StartsWith(
            meta.restored_by,
            absl::StrCat(req.restore_id(), " ", req.snapshot_id(), " "))) {
      auto m = repo_->ReadPartitionManifest(
          req.snapshot_id(), p, req.expected_manifest_sha256(), nullptr);
      if (!m.ok()) {
        return Annotate(m.status(), what, ErrorReason::kCheckpointFailed);
      }
      RestorePartitionResponse resp;
      *resp.mutable_manifest() = *std::move(m);
      resp.set_leader_epoch(meta.leader_epoch);
      resp.set_already_restored(true);
      return resp;
    }
  }
  uint64_t live_epoch = 0;
  {
    ASSIGN_OR_RETURN(
        NodeHost::StoreRef store,
        host_->AcquireLed(p, req.expected_leader_epoch(), options_.node_id));
    live_epoch = store->meta().leader_epoch;
  }  // no reference may be held across the swap
  absl::Status begun = host_->BeginRestore(
      p, absl::StrCat("partition ", p, " is being restored from snapshot ",
                      req.snapshot_id(), " (restore ", req.restore_id(),
                      "); writes are refused until it ends, retry"));
  if (!begun.ok()) return WithReason(begun, ErrorReason::kNodeBusy);
  spdlog::info("{} (restore {}): writes refused, fetching", what,
               req.restore_id());
  auto r = Replace(req, live_epoch);
  if (!r.ok()) {
    fs::RemoveAll(host_->RestoreStagingPath(p)).IgnoreError();
    host_->EndRestore(p);
    // Which store is live is read, not assumed: a failure after the swap
    // (e.g. syncing the directory) leaves the restored one live, and a
    // repeat of this restore is then answered from its marker.
    bool restored = false;
    if (auto live = host_->Acquire(p); live.ok()) {
      restored = absl::StartsWith((*live)->meta().restored_by,
                                  absl::StrCat(req.restore_id(), " "));
    }
    spdlog::warn(
        "{} failed, {}: {}", what,
        restored ? "the restored store is live" : "the old store is kept",
        r.status().ToString());
    return Annotate(r.status(), what, ErrorReason::kCheckpointFailed);
  }
  spdlog::info(
      "{} (restore {}): live at epoch {}, applied index {}, {} "
      "bytes in {} ms + {} ms swap",
      what, req.restore_id(), r->leader_epoch(), r->manifest().applied_index(),
      r->manifest().total_bytes(), r->fetch_millis(), r->swap_millis());
  return r;
}

absl::StatusOr<RestorePartitionResponse> PartitionRestorer::Replace(
    const RestorePartitionRequest& req, uint64_t live_epoch) {
  const uint32_t p = req.partition_id();
  auto m = repo_->ReadPartitionManifest(
      req.snapshot_id(), p, req.expected_manifest_sha256(), nullptr);
  if (absl::IsNotFound(m.status())) {
    return WithReason(absl::NotFoundError(absl::StrCat(
                          "snapshot ", req.snapshot_id(),
                          " has no published checkpoint of partition ", p)),
                      ErrorReason::kInvalidRequest);
  }
  RETURN_IF_ERROR(m.status());
  const std::string staging = host_->RestoreStagingPath(p);
  RETURN_IF_ERROR(fs::RemoveAll(staging));
  const absl::Time start = clock_->Now();
  snapshot::DownloadOptions d;
  d.parallel_files = options_.parallel_files;
  std::atomic<bool> first{true};
  d.after_file = [&](const std::string&) {
    if (first.exchange(false)) Fault("restore-fetching");
    return CheckNotCancelled(req.restore_id());
  };
  RETURN_IF_ERROR(repo_->DownloadPartition(*m, staging, d));
  ASSIGN_OR_RETURN(partition::PartitionMeta meta,
                   partition::PartitionStore::ReadMeta(staging));
  if (meta.applied_index != m->applied_index() ||
      meta.leader_epoch != m->leader_epoch()) {
    return absl::DataLossError(
        absl::StrCat("the checkpoint holds applied index ", meta.applied_index,
                     " epoch ", meta.leader_epoch, ", its manifest says ",
                     m->applied_index(), " epoch ", m->leader_epoch()));
  }
  Fault("restore-assembled");
  RETURN_IF_ERROR(CheckNotCancelled(req.restore_id()));
  // The restored store starts at the live store's epoch (or the
  // checkpoint's, if higher); retaking leadership raises it.
  RETURN_IF_ERROR(partition::PartitionStore::StampRestored(
      staging, std::max(live_epoch, m->leader_epoch()),
      RestoreMarker(req.restore_id(), req.snapshot_id(), m->applied_index())));
  const absl::Time fetched = clock_->Now();
  RETURN_IF_ERROR(host_->SwapInRestored(p, options_.drain, options_.fault));
  RestorePartitionResponse resp;
  ASSIGN_OR_RETURN(NodeHost::StoreRef store, host_->Acquire(p));
  resp.set_leader_epoch(store->meta().leader_epoch);
  *resp.mutable_manifest() = *std::move(m);
  resp.set_fetch_millis(absl::ToInt64Milliseconds(fetched - start));
  resp.set_swap_millis(absl::ToInt64Milliseconds(clock_->Now() - fetched));
  return resp;
}

}  // namespace shutter::node
