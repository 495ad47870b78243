#include "controller/verifier.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/text.h"

namespace shutter::controller {

absl::StatusOr<shutter::v1::VerifySnapshotResponse> VerifyCommittedSnapshot(
    const snapshot::Repository& repo, const std::string& snapshot_id) {
  shutter::v1::VerifySnapshotResponse resp;
  ASSIGN_OR_RETURN(auto cm, repo.ReadClusterManifest(snapshot_id));
  for (const auto& entry : cm.partitions()) {
    resp.set_partitions_checked(resp.partitions_checked() + 1);
    auto pm = repo.ReadPartitionManifest(snapshot_id, entry.partition_id());
    absl::Status s = pm.status();
    if (pm.ok()) {
      if (pm->applied_index() != entry.applied_index() ||
          pm->leader_epoch() != entry.leader_epoch()) {
        s = absl::DataLossError(absl::StrCat(
            "partition manifest (applied index ", pm->applied_index(),
            ", epoch ", pm->leader_epoch(),
            ") disagrees with the cluster manifest (", entry.applied_index(),
            ", ", entry.leader_epoch(), ")"));
      } else {
        s = repo.VerifyPartition(*pm);
        resp.set_files_checked(resp.files_checked() + pm->files_size());
        resp.set_bytes_checked(resp.bytes_checked() + pm->total_bytes());
      }
    }
    if (!s.ok()) {
      auto* p = resp.add_problems();
      p->set_partition_id(entry.partition_id());
      p->set_error(StatusText(s));
    }
  }
  resp.set_ok(resp.problems_size() == 0);
  return resp;
}

}  // namespace shutter::controller
