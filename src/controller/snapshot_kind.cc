#include "controller/snapshot_kind.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/error_reason.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "controller/job_engine.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {

using shutter::v1::CreateCheckpointResponse;
using shutter::v1::PartitionTask;

void SnapshotKind::RunTask(const shutter::v1::Snapshot& job,
                           const PartitionTask& task,
                           const std::string& address, TaskCallback done) {
  const std::string& job_id = job.snapshot_id();
  shutter::v1::CreateCheckpointRequest req;
  req.set_snapshot_id(job_id);
  req.set_partition_id(task.partition_id());
  req.set_expected_leader_epoch(task.leader_epoch());
  req.set_expected_instance_id(task.node_instance_id());
  transport_->CreateCheckpoint(
      address, req, rpc_timeout_,
      [this, job_id, task, done = std::move(done)](
          absl::StatusOr<CreateCheckpointResponse> result) mutable {
        if (!result.ok()) {
          std::move(done)(result.status());
          return;
        }
        // Looks at the repository: the engine holds no lock here.
        absl::Status verified = VerifyPublished(task, job_id, *result);
        if (!verified.ok()) {
          std::move(done)(verified);
          return;
        }
        TaskOutcome outcome;
        outcome.manifest = std::move(*result->mutable_manifest());
        outcome.path = result->manifest_path();
        outcome.uploaded_bytes = result->uploaded_bytes();
        outcome.reused_bytes = result->reused_bytes();
        outcome.manifest_sha256 = std::move(*result->mutable_manifest_sha256());
        outcome.waited_at_node =
            absl::Milliseconds(std::max<int64_t>(0, result->waited_millis()));
        std::move(done)(std::move(outcome));
      });
}

absl::Status SnapshotKind::VerifyPublished(
    const PartitionTask& task, const std::string& job_id,
    const CreateCheckpointResponse& response) const {
  const auto& m = response.manifest();
  if (m.snapshot_id() != job_id || m.partition_id() != task.partition_id()) {
    return WithReason(absl::InternalError(absl::StrCat(
                          "node answered for snapshot ", Quote(m.snapshot_id()),
                          " partition ", m.partition_id())),
                      ErrorReason::kMismatchedAnswer);
  }
  if (m.leader_epoch() != task.leader_epoch()) {
    return WithReason(absl::FailedPreconditionError(absl::StrCat(
                          "checkpoint has leader epoch ", m.leader_epoch(),
                          ", expected ", task.leader_epoch())),
                      ErrorReason::kMismatchedAnswer);
  }
  if (!response.manifest_sha256().empty()) {
    // The node says what it stored: check that the repository holds an
    // object of that size where the manifest goes (one stat or HEAD, not a
    // read and parse); the digest goes into the cluster manifest, which
    // every later reader of the partition checks it against.
    if (!IsLowerHex(response.manifest_sha256(), 64)) {
      return WithReason(absl::InternalError(absl::StrCat(
                            "node answered for partition ", task.partition_id(),
                            " with a malformed manifest digest ",
                            Quote(response.manifest_sha256()))),
                        ErrorReason::kMismatchedAnswer);
    }
    auto size = repo_->PartitionManifestSize(job_id, task.partition_id());
    if (absl::IsNotFound(size.status())) {
      // The node says published, the repository has nothing.
      return WithReason(size.status(), ErrorReason::kMismatchedAnswer);
    }
    if (!size.ok()) return size.status();
    if (*size != response.manifest_bytes()) {
      return WithReason(
          absl::DataLossError(absl::StrCat(
              "repository manifest of partition ", task.partition_id(), " has ",
              *size, " bytes, the node reported ", response.manifest_bytes())),
          ErrorReason::kMismatchedAnswer);
    }
    return absl::OkStatus();
  }
  // A node that does not report a digest: read the manifest back.
  auto read = repo_->ReadPartitionManifest(job_id, task.partition_id());
  if (absl::IsNotFound(read.status())) {
    // The node says published, the repository has nothing.
    return WithReason(read.status(), ErrorReason::kMismatchedAnswer);
  }
  if (!read.ok()) return read.status();  // e.g. another manifest format
  const shutter::v1::PartitionManifest& stored = *read;
  if (stored.leader_epoch() != m.leader_epoch() ||
      stored.applied_index() != m.applied_index() ||
      stored.files_size() != m.files_size() ||
      stored.total_bytes() != m.total_bytes() ||
      stored.node_id() != task.node_id()) {
    return WithReason(
        absl::DataLossError(absl::StrCat(
            "repository manifest of partition ", task.partition_id(),
            " does not match the node's answer (epoch ", stored.leader_epoch(),
            " vs ", m.leader_epoch(), ", applied index ",
            stored.applied_index(), " vs ", m.applied_index(), ")")),
        ErrorReason::kMismatchedAnswer);
  }
  return absl::OkStatus();
}

absl::AnyInvocable<absl::Status() &&> SnapshotKind::PrepareCommit(
    const Job& job, absl::Time now) {
  auto cm =
      std::make_unique<shutter::v1::ClusterManifest>(job.BuildManifest(now));
  return [this, cm = std::move(cm)]() -> absl::Status {
    absl::Status s = CommitClusterManifest(*repo_, *cm);
    if (s.ok()) return s;
    return absl::Status(s.code(), absl::StrCat("writing the cluster manifest "
                                               "failed: ",
                                               StatusText(s)));
  };
}

void SnapshotKind::DescribeCommit(const std::string& job_id, bool partial,
                                  int failed, int total,
                                  const std::string& first_failed,
                                  shutter::v1::Snapshot* header) const {
  header->set_manifest_path(snapshot::Repository::ClusterManifestPath(job_id));
  if (partial) {
    header->set_error(absl::StrCat(
        failed, " of ", total,
        " partitions missing (listed in the manifest); first: ", first_failed));
  }
}

absl::Status SnapshotKind::Rollback(const std::string& job_id) {
  return repo_->DeleteUncommittedSnapshot(job_id);
}

void SnapshotKind::CancelOnNode(const std::string& address,
                                const std::string& job_id) {
  transport_->CancelCheckpoints(address, job_id);
}

absl::Status CommitClusterManifest(snapshot::Repository& repo,
                                   const shutter::v1::ClusterManifest& cm) {
  absl::Status written = repo.CommitClusterManifest(cm);
  if (absl::IsAlreadyExists(written)) {
    // A crash after writing the manifest but before recording the state:
    // the manifest there is ours if it names this snapshot.
    auto existing = repo.ReadClusterManifest(cm.snapshot_id());
    if (existing.ok() && existing->snapshot_id() == cm.snapshot_id()) {
      return absl::OkStatus();
    }
  }
  return written;
}

absl::StatusOr<std::string> StartSnapshot(
    JobEngine& engine, const shutter::v1::CreateSnapshotRequest& request) {
  // A repeated call (e.g. retried on a new leader): the first one's job.
  ASSIGN_OR_RETURN(
      std::optional<std::string> earlier,
      engine.FindRequest(request.request_id(), shutter::v1::JOB_TYPE_SNAPSHOT));
  if (earlier) return *earlier;
  if (request.label().size() > kMaxLabelBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("label is ", request.label().size(),
                     " bytes; the limit is ", kMaxLabelBytes));
  }
  RETURN_IF_ERROR(CheckPrintableText("label", request.label()));
  if (!request.schedule().empty()) {
    RETURN_IF_ERROR(CheckSafeId("schedule", request.schedule()));
  }
  std::vector<uint32_t> ids;
  const std::vector<uint32_t> known = engine.registry()->PartitionIds();
  if (request.partition_ids().empty()) {
    ids = known;
    if (ids.empty()) {
      return absl::FailedPreconditionError(
          "no partitions are known: no node has reported any yet");
    }
  } else {
    std::set<uint32_t> seen;
    for (uint32_t id : request.partition_ids()) {
      if (!seen.insert(id).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("partition ", id, " is listed twice"));
      }
      if (!std::binary_search(known.begin(), known.end(), id)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "unknown partition ", id, ": no node reports hosting it"));
      }
      ids.push_back(id);
    }
    std::sort(ids.begin(), ids.end());
  }

  shutter::v1::Snapshot record;
  record.set_request_id(request.request_id());
  record.set_label(request.label());
  record.set_allow_partial(request.allow_partial());
  record.set_schedule(request.schedule());
  ASSIGN_OR_RETURN(auto leaders, engine.ResolveLeaders(ids));
  ASSIGN_OR_RETURN(std::string snapshot_id,
                   engine.Submit({std::move(record), std::move(leaders)}));
  spdlog::info("snapshot {} created: {} partitions, label {}", snapshot_id,
               ids.size(), Quote(request.label(), kMaxLabelBytes));
  return snapshot_id;
}

absl::StatusOr<shutter::v1::ClusterManifest> ReadCommittedSnapshot(
    const snapshot::Repository& repo, const std::string& snapshot_id) {
  auto cm = repo.ReadClusterManifest(snapshot_id);
  if (absl::IsNotFound(cm.status())) {
    return absl::NotFoundError(absl::StrCat(
        "snapshot ", snapshot_id, " is not in the repository ", repo.Describe(),
        " (not committed, deleted, or never taken)"));
  }
  return cm;
}

}  // namespace shutter::controller
