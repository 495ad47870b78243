#include "node/checkpoint_taker.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "common/error_reason.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "node/node_instance.h"
#include "spdlog/spdlog.h"

namespace shutter::node {

using shutter::v1::CreateCheckpointRequest;
using shutter::v1::CreateCheckpointResponse;

CheckpointTaker::CheckpointTaker(const Options& options, NodeHost* host,
                                 snapshot::Repository* repo, Clock* clock)
    : options_(options),
      own_lifecycle_(options.node_id),
      lifecycle_(options.lifecycle != nullptr ? options.lifecycle
                                              : &own_lifecycle_),
      host_(host),
      repo_(repo),
      clock_(clock),
      // Bodies block (RocksDB checkpoint and copy): one worker per slot.
      runner_({"checkpoint", "snapshot", options.capacity, options.io_class,
               options.nice,
               [this](const absl::StatusOr<CreateCheckpointResponse>& r) {
                 Finished(r);
               }}) {}

CheckpointTaker::~CheckpointTaker() { Shutdown(); }

absl::StatusOr<std::unique_ptr<CheckpointTaker>> CheckpointTaker::Create(
    const Options& options, NodeHost* host, snapshot::Repository* repo,
    Clock* clock) {
  if (options.capacity < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint capacity must be at least 1, got ", options.capacity));
  }
  // Anything here was left by a crash mid-checkpoint: nothing in it was
  // published, so it is safe to drop.
  RETURN_IF_ERROR(fs::RemoveAll(options.staging_dir));
  RETURN_IF_ERROR(fs::CreateDirs(options.staging_dir));
  return std::unique_ptr<CheckpointTaker>(
      new CheckpointTaker(options, host, repo, clock));
}

void CheckpointTaker::Shutdown() {
  Drain();
  runner_.Shutdown();
}

void CheckpointTaker::CancelSnapshot(const std::string& snapshot_id) {
  runner_.Cancel(snapshot_id);
}

void CheckpointTaker::SetLimit(uint32_t limit) {
  // The runner clamps to 1..capacity; this only keeps the int positive.
  runner_.SetLimit(static_cast<int>(std::min(limit, 1u << 16)));
}

absl::Status CheckpointTaker::Admit(const CreateCheckpointRequest& req) const {
  RETURN_IF_ERROR(AdmitPartitionWork(
      {{"snapshot_id", &req.snapshot_id()}}, [this] { return CheckServing(); },
      req.expected_instance_id(), options_.instance_id, options_.node_id));
  return host_
      ->AcquireLed(req.partition_id(), req.expected_leader_epoch(),
                   options_.node_id)
      .status();
}

void CheckpointTaker::CreateCheckpoint(const CreateCheckpointRequest& request,
                                       Callback done) {
  absl::Status admitted = Admit(request);
  if (!admitted.ok()) {
    std::move(done)(admitted);
    return;
  }
  // A repeat of a checkpoint in progress (e.g. a controller retrying after
  // a restart) joins it and gets its result.
  runner_.Run(request.snapshot_id(), request.partition_id(), std::move(done),
              [this, request, arrived = clock_->Now()] {
                return Run(request, arrived);
              });
}

void CheckpointTaker::Finished(
    const absl::StatusOr<CreateCheckpointResponse>& result) {
  if (!result.ok()) return;
  absl::MutexLock l(&mu_);
  ++(result->already_published() ? already_published_ : published_);
  publish_bytes_read_ += result->local_bytes_read();
  if (!result->already_published()) {
    checkpoint_phase_millis_ += result->checkpoint_millis();
    publish_phase_millis_ += result->publish_millis();
  }
}

absl::StatusOr<CreateCheckpointResponse> CheckpointTaker::Run(
    const CreateCheckpointRequest& req, absl::Time arrived) {
  // Leadership may have changed, or the snapshot been cancelled, while the
  // request waited for a slot.
  RETURN_IF_ERROR(CheckNotCancelled(req.snapshot_id()));
  RETURN_IF_ERROR(Admit(req));
  CreateCheckpointResponse resp;
  resp.set_waited_millis(
      std::max<int64_t>(0, absl::ToInt64Milliseconds(clock_->Now() - arrived)));
  resp.set_manifest_path(snapshot::Repository::PartitionManifestPath(
      req.snapshot_id(), req.partition_id()));
  snapshot::ManifestDigest stored;
  auto existing = repo_->ReadPartitionManifest(req.snapshot_id(),
                                               req.partition_id(), "", &stored);
  if (existing.ok()) {
    spdlog::info("partition {} of snapshot {} already published; returning it",
                 req.partition_id(), req.snapshot_id());
    *resp.mutable_manifest() = std::move(existing).value();
    resp.set_already_published(true);
    resp.set_manifest_sha256(stored.sha256);
    resp.set_manifest_bytes(stored.size);
    return resp;
  }
  if (!absl::IsNotFound(existing.status())) {
    return WithReason(existing.status(), ErrorReason::kCheckpointFailed);
  }

  if (options_.min_free_bytes > 0) {
    for (const std::string& dir : {options_.data_dir, options_.staging_dir}) {
      if (dir.empty()) continue;
      ASSIGN_OR_RETURN(uint64_t free, fs::FreeBytes(dir));
      if (free < options_.min_free_bytes) {
        return WithReason(
            absl::ResourceExhaustedError(absl::StrFormat(
                "node %s: only %d MiB free on the filesystem of %s, below the "
                "floor of %d MiB; refusing the checkpoint of partition %u",
                options_.node_id, free >> 20, dir,
                options_.min_free_bytes >> 20, req.partition_id())),
            ErrorReason::kNodeBusy);
      }
    }
  }
  if (options_.test_before_checkpoint) options_.test_before_checkpoint(req);
  // Checked again now that its turn has come: leadership may have moved,
  // or a restore may be replacing the store.
  ASSIGN_OR_RETURN(
      NodeHost::StoreRef store,
      host_->AcquireLed(req.partition_id(), req.expected_leader_epoch(),
                        options_.node_id));
  const std::string staging =
      absl::StrFormat("%s/%s.%05u", options_.staging_dir, req.snapshot_id(),
                      req.partition_id());
  absl::Time start = clock_->Now();
  auto result = [&]() -> absl::StatusOr<CreateCheckpointResponse> {
    RETURN_IF_ERROR(fs::RemoveAll(staging));
    RETURN_IF_ERROR(store->CreateCheckpoint(staging));
    ASSIGN_OR_RETURN(partition::PartitionMeta meta,
                     partition::PartitionStore::ReadMeta(staging));
    if (meta.leader_epoch != req.expected_leader_epoch()) {
      return WithReason(
          absl::FailedPreconditionError(absl::StrCat(
              "leadership of partition ", req.partition_id(),
              " changed during the checkpoint: checkpoint has epoch ",
              meta.leader_epoch, ", request expects ",
              req.expected_leader_epoch())),
          ErrorReason::kStaleEpoch);
    }
    absl::Time checkpointed = clock_->Now();
    shutter::v1::PartitionManifest header;
    header.set_snapshot_id(req.snapshot_id());
    header.set_partition_id(req.partition_id());
    header.set_node_id(options_.node_id);
    header.set_leader_epoch(meta.leader_epoch);
    header.set_applied_index(meta.applied_index);
    header.set_created_at_micros(absl::ToUnixMicros(checkpointed));
    // Leadership may move, or the snapshot be cancelled, while the files
    // are copied (which can take long): check again right before the
    // publication becomes visible, so neither a deposed leader nor a
    // cancelled snapshot ever publishes.
    auto still_leader = [&]() -> absl::Status {
      RETURN_IF_ERROR(CheckNotCancelled(req.snapshot_id()));
      const uint64_t now_epoch = store->meta().leader_epoch;
      if (!store->is_leader() || now_epoch != req.expected_leader_epoch()) {
        return WithReason(
            absl::FailedPreconditionError(absl::StrCat(
                "leadership of partition ", req.partition_id(),
                " moved during the checkpoint: node ", options_.node_id,
                (store->is_leader() ? " leads" : " no longer leads"),
                " at epoch ", now_epoch, ", request expects epoch ",
                req.expected_leader_epoch())),
            store->is_leader() ? ErrorReason::kStaleEpoch
                               : ErrorReason::kNotLeader);
      }
      return absl::OkStatus();
    };
    snapshot::PublishStats published;
    ASSIGN_OR_RETURN(
        *resp.mutable_manifest(),
        repo_->PublishPartition(header, staging, still_leader, &published));
    resp.set_manifest_sha256(published.manifest.sha256);
    resp.set_manifest_bytes(published.manifest.size);
    resp.set_uploaded_bytes(published.uploaded_bytes);
    resp.set_reused_bytes(published.reused_bytes);
    resp.set_files_hash_cached(published.files_hash_cached);
    resp.set_local_bytes_read(published.local_bytes_read);
    resp.set_checkpoint_millis(absl::ToInt64Milliseconds(checkpointed - start));
    resp.set_publish_millis(
        absl::ToInt64Milliseconds(clock_->Now() - checkpointed));
    durations_.Record(clock_->Now() - start);
    return resp;
  }();
  if (!result.ok() &&
      GetErrorReason(result.status()) == ErrorReason::kUnspecified) {
    result = WithReason(result.status(), ErrorReason::kCheckpointFailed);
  }
  absl::Status cleanup = fs::RemoveAll(staging);
  if (!cleanup.ok()) {
    spdlog::error("cannot remove staging {}: {}", staging, cleanup.ToString());
  }
  if (result.ok()) {
    spdlog::info(
        "published partition {} of snapshot {}: epoch {}, applied index {}, "
        "{} files, {} bytes ({} uploaded, {} already stored), checkpoint {} "
        "ms, publish {} ms",
        req.partition_id(), req.snapshot_id(),
        result->manifest().leader_epoch(), result->manifest().applied_index(),
        result->manifest().files_size(), result->manifest().total_bytes(),
        result->uploaded_bytes(), result->reused_bytes(),
        result->checkpoint_millis(), result->publish_millis());
  } else {
    spdlog::warn("checkpoint of partition {} for snapshot {} failed: {}",
                 req.partition_id(), req.snapshot_id(),
                 result.status().ToString());
  }
  return result;
}

absl::StatusOr<CreateCheckpointResponse> CheckpointTaker::CreateCheckpointSync(
    const CreateCheckpointRequest& request) {
  return AwaitResult<CreateCheckpointResponse>(
      [&](Callback done) { CreateCheckpoint(request, std::move(done)); });
}

CheckpointTaker::Stats CheckpointTaker::GetStats() const {
  const auto run = runner_.GetStats();
  Stats stats;
  stats.in_flight = run.in_flight;
  stats.peak_in_flight = run.peak_in_flight;
  stats.running = run.running;
  stats.peak_running = run.peak_running;
  stats.limit = run.limit;
  stats.failed = run.failed;
  stats.joined = run.joined;
  absl::MutexLock l(&mu_);
  stats.published = published_;
  stats.already_published = already_published_;
  stats.publish_bytes_read = publish_bytes_read_;
  stats.checkpoint_phase_millis = checkpoint_phase_millis_;
  stats.publish_phase_millis = publish_phase_millis_;
  return stats;
}

}  // namespace shutter::node
