#include "node/bootstrap.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "partition/partition_store.h"
#include "snapshot/blob_store.h"
#include "spdlog/spdlog.h"

namespace shutter::node {

namespace {
absl::StatusOr<std::string> ResolveSnapshot(const std::string& from,
                                            const snapshot::Repository& repo) {
  if (from != "latest") {
    RETURN_IF_ERROR(CheckSafeId("--bootstrap-from", from));
    return from;
  }
  ASSIGN_OR_RETURN(std::vector<snapshot::SnapshotListing> all,
                   repo.ListSnapshots());
  // Ids sort by creation time: the last committed one is the newest.
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (it->committed) return it->snapshot_id;
  }
  return absl::NotFoundError(absl::StrCat("repository ", repo.Describe(),
                                          " has no committed snapshot"));
}
}  // namespace

absl::StatusOr<BootstrapReport> BootstrapPartitions(
    const BootstrapOptions& options, const snapshot::Repository& repo) {
  BootstrapReport report;
  std::vector<uint32_t> missing;
  for (uint32_t p : options.partitions) {
    const std::string dir =
        absl::StrFormat("%s/partitions/%05u", options.data_dir, p);
    (fs::Exists(dir) ? report.kept : missing).push_back(p);
  }
  if (missing.empty()) return report;
  ASSIGN_OR_RETURN(report.snapshot_id, ResolveSnapshot(options.from, repo));
  auto cm = repo.ReadClusterManifest(report.snapshot_id);
  if (!cm.ok()) {
    return absl::Status(
        cm.status().code(),
        absl::StrCat("bootstrap from snapshot ", report.snapshot_id, ": ",
                     cm.status().message()));
  }
  RETURN_IF_ERROR(fs::CreateDirs(options.data_dir + "/partitions"));
  RETURN_IF_ERROR(fs::CreateDirs(options.data_dir + "/staging"));
  for (uint32_t p : missing) {
    const std::string what = absl::StrCat(
        "bootstrap of partition ", p, " from snapshot ", report.snapshot_id);
    const shutter::v1::ClusterManifestPartition* entry = nullptr;
    for (const auto& e : cm->partitions()) {
      if (e.partition_id() == p) entry = &e;
    }
    if (entry == nullptr) {
      return absl::NotFoundError(
          absl::StrCat(what, ": the snapshot does not contain it"));
    }
    ASSIGN_OR_RETURN(
        shutter::v1::PartitionManifest m,
        repo.ReadPartitionManifest(report.snapshot_id, p,
                                   entry->manifest_sha256(), nullptr));
    if (m.applied_index() < options.min_applied_index) {
      return absl::FailedPreconditionError(
          absl::StrCat(what, ": its applied index ", m.applied_index(),
                       " is below the required ", options.min_applied_index));
    }
    const std::string staging =
        absl::StrFormat("%s/staging/bootstrap-%05u", options.data_dir, p);
    const std::string target =
        absl::StrFormat("%s/partitions/%05u", options.data_dir, p);
    RETURN_IF_ERROR(fs::RemoveAll(staging));
    absl::Status s = [&]() -> absl::Status {
      RETURN_IF_ERROR(repo.DownloadPartition(m, staging));
      ASSIGN_OR_RETURN(partition::PartitionMeta meta,
                       partition::PartitionStore::ReadMeta(staging));
      if (meta.applied_index != m.applied_index() ||
          meta.leader_epoch != m.leader_epoch()) {
        return absl::DataLossError(absl::StrCat(
            "the checkpoint holds applied index ", meta.applied_index,
            " epoch ", meta.leader_epoch, ", its manifest says ",
            m.applied_index(), " epoch ", m.leader_epoch()));
      }
      if (::rename(staging.c_str(), target.c_str()) != 0) {
        return fs::ErrnoStatus("rename to " + target, staging);
      }
      return fs::SyncDir(options.data_dir + "/partitions");
    }();
    if (!s.ok()) {
      fs::RemoveAll(staging).IgnoreError();
      return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
    }
    report.restored.push_back(p);
    report.bytes += m.total_bytes();
    spdlog::info("{}: applied index {}, epoch {}, {} files, {} bytes", what,
                 m.applied_index(), m.leader_epoch(), m.files_size(),
                 m.total_bytes());
  }
  return report;
}

}  // namespace shutter::node
