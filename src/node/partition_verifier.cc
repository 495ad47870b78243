#include "node/partition_verifier.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/error_reason.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "node/node_instance.h"
#include "partition/partition_store.h"
#include "spdlog/spdlog.h"

namespace shutter::node {

using shutter::v1::PartitionManifest;
using shutter::v1::VerifyPartitionRequest;
using shutter::v1::VerifyPartitionResponse;

namespace {
// A problem with the snapshot itself: DATA_LOSS with CHECKPOINT_FAILED,
// prefixed with what was being verified.
absl::Status Problem(const std::string& what, const absl::Status& s) {
  return WithReason(
      absl::Status(s.code(), absl::StrCat(what, ": ", s.message())),
      GetErrorReason(s) == ErrorReason::kUnspecified
          ? ErrorReason::kCheckpointFailed
          : GetErrorReason(s));
}
}  // namespace

PartitionVerifier::PartitionVerifier(const Options& options,
                                     snapshot::Repository* repo, Clock* clock)
    : options_(options),
      repo_(repo),
      clock_(clock),
      runner_({"verify", "", options.capacity, options.io_class, options.nice,
               nullptr}) {}

absl::StatusOr<std::unique_ptr<PartitionVerifier>> PartitionVerifier::Create(
    const Options& options, snapshot::Repository* repo, Clock* clock) {
  if (options.capacity < 1 || options.parallel_files < 1) {
    return absl::InvalidArgumentError(
        "verify capacity and parallel files must be at least 1");
  }
  if (options.scratch_dir.empty()) {
    return absl::InvalidArgumentError("verify needs a scratch directory");
  }
  return std::unique_ptr<PartitionVerifier>(
      new PartitionVerifier(options, repo, clock));
}

void PartitionVerifier::Verify(const VerifyPartitionRequest& request,
                               Callback done) {
  absl::Status admitted =
      AdmitPartitionWork({{"verify_id", &request.verify_id()},
                          {"snapshot_id", &request.snapshot_id()}},
                         options_.check_serving, request.expected_instance_id(),
                         options_.instance_id, options_.node_id);
  if (admitted.ok()) admitted = runner_.CheckNotCancelled(request.verify_id());
  if (!admitted.ok()) {
    std::move(done)(admitted);
    return;
  }
  runner_.Run(request.verify_id(), request.partition_id(), std::move(done),
              [this, request] { return Run(request); });
}

absl::StatusOr<VerifyPartitionResponse> PartitionVerifier::VerifySync(
    const VerifyPartitionRequest& request) {
  return AwaitResult<VerifyPartitionResponse>(
      [&](Callback done) { Verify(request, std::move(done)); });
}

absl::StatusOr<VerifyPartitionResponse> PartitionVerifier::Run(
    const VerifyPartitionRequest& req) {
  RETURN_IF_ERROR(runner_.CheckNotCancelled(req.verify_id()));
  const absl::Time start = clock_->Now();
  const std::string what = absl::StrCat("snapshot ", req.snapshot_id(),
                                        " partition ", req.partition_id());
  auto m =
      repo_->ReadPartitionManifest(req.snapshot_id(), req.partition_id(),
                                   req.expected_manifest_sha256(), nullptr);
  if (absl::IsNotFound(m.status())) {
    return WithReason(
        absl::NotFoundError(absl::StrCat(what, ": no published checkpoint")),
        ErrorReason::kCheckpointFailed);
  }
  if (absl::IsDataLoss(m.status()) || absl::IsInvalidArgument(m.status())) {
    return Problem(what, m.status());  // an unreadable manifest
  }
  RETURN_IF_ERROR(m.status());  // e.g. the store is unreachable: retryable
  if (req.expected_applied_index() != 0 &&
      m->applied_index() != req.expected_applied_index()) {
    return Problem(what, absl::DataLossError(absl::StrCat(
                             "the partition manifest says applied index ",
                             m->applied_index(), ", the cluster manifest ",
                             req.expected_applied_index())));
  }
  VerifyPartitionResponse resp;
  if (req.deep()) {
    RETURN_IF_ERROR(Deep(req, *m, &resp));
  } else {
    absl::Status s = repo_->VerifyPartition(*m);
    if (!s.ok()) return absl::IsDataLoss(s) ? Problem(what, s) : s;
  }
  RETURN_IF_ERROR(runner_.CheckNotCancelled(req.verify_id()));
  resp.set_files_checked(static_cast<uint32_t>(m->files_size()));
  resp.set_bytes_checked(m->total_bytes());
  resp.set_millis(absl::ToInt64Milliseconds(clock_->Now() - start));
  *resp.mutable_manifest() = *std::move(m);
  spdlog::info(
      "{}: verified{} ({} files, {} bytes{}) in {} ms", what,
      req.deep() ? " deep" : "", resp.files_checked(), resp.bytes_checked(),
      req.deep() ? absl::StrCat(", ", resp.keys_scanned(), " keys") : "",
      resp.millis());
  return resp;
}

absl::Status PartitionVerifier::Deep(const VerifyPartitionRequest& req,
                                     const PartitionManifest& m,
                                     VerifyPartitionResponse* resp) {
  const std::string what = absl::StrCat("snapshot ", req.snapshot_id(),
                                        " partition ", req.partition_id());
  RETURN_IF_ERROR(fs::CreateDirs(options_.scratch_dir));
  const std::string dir = absl::StrCat(
      options_.scratch_dir, "/", req.verify_id(), "-", req.partition_id());
  RETURN_IF_ERROR(fs::RemoveAll(dir));
  struct Cleanup {
    std::string dir;
    ~Cleanup() { fs::RemoveAll(dir).IgnoreError(); }
  } cleanup{dir};
  snapshot::DownloadOptions d;
  d.parallel_files = options_.parallel_files;
  d.after_file = [&](const std::string&) {
    return runner_.CheckNotCancelled(req.verify_id());
  };
  if (absl::Status s = repo_->DownloadPartition(m, dir, d); !s.ok()) {
    return absl::IsDataLoss(s) ? Problem(what, s) : s;
  }
  auto db = partition::ReadOnlyPartition::Open(dir);
  if (!db.ok())
    return Problem(what, absl::DataLossError(db.status().message()));
  const partition::PartitionMeta& meta = (*db)->meta();
  if (meta.applied_index != m.applied_index() ||
      meta.leader_epoch != m.leader_epoch()) {
    return Problem(
        what, absl::DataLossError(absl::StrCat(
                  "the checkpoint holds applied index ", meta.applied_index,
                  " epoch ", meta.leader_epoch, ", its manifest says ",
                  m.applied_index(), " epoch ", m.leader_epoch())));
  }
  auto keys = (*db)->CountKeys();
  if (!keys.ok()) {
    return Problem(what, absl::DataLossError(keys.status().message()));
  }
  resp->set_keys_scanned(*keys);
  return absl::OkStatus();
}

}  // namespace shutter::node
