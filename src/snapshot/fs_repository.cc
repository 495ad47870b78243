#include "snapshot/fs_repository.h"

#include <errno.h>
#include <stdio.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "snapshot/manifest.h"

namespace shutter::snapshot {

using shutter::v1::ClusterManifest;
using shutter::v1::PartitionManifest;

namespace {
constexpr char kManifestName[] = "MANIFEST.json";
constexpr char kIdentityName[] = "REPOSITORY_ID";

std::string RandomHex(int bytes) {
  std::random_device rd;
  std::string out;
  for (int i = 0; i < bytes; i += 4) absl::StrAppendFormat(&out, "%08x", rd());
  return out.substr(0, 2 * bytes);
}

absl::Status CheckSnapshotId(const std::string& id) {
  return CheckSafeId("snapshot id", id);
}

std::string RandomSuffix() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return absl::StrFormat("%016x", rng());
}
}  // namespace

std::string Repository::PartitionDir(const std::string& snapshot_id,
                                     uint32_t partition_id) {
  return absl::StrFormat("snapshots/%s/partitions/%05u", snapshot_id,
                         partition_id);
}

std::string Repository::PartitionManifestPath(const std::string& snapshot_id,
                                              uint32_t partition_id) {
  return absl::StrCat(PartitionDir(snapshot_id, partition_id), "/",
                      kManifestName);
}

std::string Repository::ClusterManifestPath(const std::string& snapshot_id) {
  return absl::StrCat("snapshots/", snapshot_id, "/CLUSTER_MANIFEST.json");
}

FsRepository::FsRepository(std::string root, const RepositoryOptions& options)
    : root_(std::move(root)),
      stream_bytes_per_second_(options.stream_bytes_per_second) {
  if (options.total_bytes_per_second > 0) {
    total_limiter_ =
        std::make_unique<RateLimiter>(options.total_bytes_per_second);
  }
}

absl::StatusOr<std::unique_ptr<FsRepository>> FsRepository::Open(
    const std::string& root, const RepositoryOptions& options) {
  if (root.empty()) {
    return absl::InvalidArgumentError("repository path is empty");
  }
  std::error_code ec;
  std::string abs = std::filesystem::absolute(root, ec).lexically_normal();
  if (ec) abs = root;
  if (abs.size() > 1 && abs.back() == '/') abs.pop_back();
  std::unique_ptr<FsRepository> repo(new FsRepository(abs, options));
  if (options.create_if_missing) {
    RETURN_IF_ERROR(fs::CreateDirs(root + "/snapshots"));
    if (absl::IsNotFound(repo->ReadIdentity().status())) {
      absl::Status s = fs::CreateFileExclusively(
          repo->Abs(kIdentityName), absl::StrCat(RandomHex(16), "\n"));
      if (!s.ok() && !absl::IsAlreadyExists(s)) return s;
    }
    RETURN_IF_ERROR(repo->ReadIdentity().status());
  }
  return repo;
}

absl::StatusOr<std::string> FsRepository::ReadIdentity() const {
  const std::string path = Abs(kIdentityName);
  if (!fs::Exists(path)) {
    return absl::NotFoundError(absl::StrCat(
        "repository ", root_, " has no identity (", path, " is missing)"));
  }
  ASSIGN_OR_RETURN(std::string id, fs::ReadFile(path));
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  if (id.size() != 32 ||
      id.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return absl::DataLossError(
        absl::StrCat(path, " is malformed: expected 32 hex digits"));
  }
  return id;
}

absl::StatusOr<PartitionManifest> FsRepository::PublishPartition(
    const PartitionManifest& header, const std::string& local_dir,
    const std::function<absl::Status()>& precommit) {
  RETURN_IF_ERROR(CheckSnapshotId(header.snapshot_id()));
  const std::string final_rel =
      PartitionDir(header.snapshot_id(), header.partition_id());
  const std::string final_dir = Abs(final_rel);
  const std::string parent = fs::Dirname(final_dir);
  if (fs::Exists(final_dir)) {
    return absl::AlreadyExistsError(
        absl::StrCat("partition ", header.partition_id(), " of snapshot ",
                     header.snapshot_id(), " is already published"));
  }
  RETURN_IF_ERROR(fs::CreateDirs(parent));
  const std::string tmp_dir = absl::StrFormat(
      "%s/.%05u.tmp-%s", parent, header.partition_id(), RandomSuffix());

  std::unique_ptr<RateLimiter> stream_limiter;
  if (stream_bytes_per_second_ > 0) {
    stream_limiter = std::make_unique<RateLimiter>(stream_bytes_per_second_);
  }
  auto publish = [&]() -> absl::StatusOr<PartitionManifest> {
    RETURN_IF_ERROR(fs::CreateDirs(tmp_dir));
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(local_dir, ec)) {
      if (!e.is_regular_file()) continue;
      names.push_back(e.path().filename().string());
    }
    if (ec) {
      return absl::InternalError(
          absl::StrCat("list ", local_dir, ": ", ec.message()));
    }
    std::sort(names.begin(), names.end());
    PartitionManifest m = header;
    m.set_format_version(kManifestFormatVersion);
    m.clear_files();
    uint64_t total = 0;
    for (const std::string& name : names) {
      if (name == kManifestName) {
        return absl::InvalidArgumentError(
            absl::StrCat(local_dir, " contains a file named ", kManifestName));
      }
      ASSIGN_OR_RETURN(
          fs::CopyResult r,
          fs::CopyFileSynced(local_dir + "/" + name, tmp_dir + "/" + name,
                             {stream_limiter.get(), total_limiter_.get()}));
      auto* f = m.add_files();
      f->set_name(name);
      f->set_size_bytes(r.size_bytes);
      f->set_sha256(r.sha256);
      total += r.size_bytes;
    }
    m.set_total_bytes(total);
    RETURN_IF_ERROR(fs::WriteFileAtomically(tmp_dir + "/" + kManifestName,
                                            EncodePartitionManifest(m)));
    RETURN_IF_ERROR(fs::SyncDir(tmp_dir));
    if (precommit) RETURN_IF_ERROR(precommit());
    if (::rename(tmp_dir.c_str(), final_dir.c_str()) != 0) {
      if (errno == ENOTEMPTY || errno == EEXIST) {
        return absl::AlreadyExistsError(
            absl::StrCat("partition ", header.partition_id(), " of snapshot ",
                         header.snapshot_id(), " is already published"));
      }
      return fs::ErrnoStatus("rename to " + final_dir, tmp_dir);
    }
    RETURN_IF_ERROR(fs::SyncDir(parent));
    // Hidden temp directories of earlier attempts at this partition (a
    // node that crashed mid-publish) are debris now: remove them.
    const std::string prefix =
        absl::StrFormat(".%05u.tmp-", header.partition_id());
    std::error_code list_ec;
    for (const auto& e : std::filesystem::directory_iterator(parent, list_ec)) {
      if (absl::StartsWith(e.path().filename().string(), prefix)) {
        fs::RemoveAll(e.path().string()).IgnoreError();
      }
    }
    return m;
  }();
  if (!publish.ok()) {
    // Leave nothing half-written: the temp dir is hidden, but remove it too.
    fs::RemoveAll(tmp_dir).IgnoreError();
  }
  return publish;
}

absl::StatusOr<PartitionManifest> FsRepository::ReadPartitionManifest(
    const std::string& snapshot_id, uint32_t partition_id) const {
  RETURN_IF_ERROR(CheckSnapshotId(snapshot_id));
  const std::string path =
      Abs(PartitionManifestPath(snapshot_id, partition_id));
  if (!fs::Exists(path)) {
    return absl::NotFoundError(
        absl::StrCat("partition ", partition_id, " of snapshot ", snapshot_id,
                     " is not published (no ", path, ")"));
  }
  ASSIGN_OR_RETURN(std::string json, fs::ReadFile(path));
  ASSIGN_OR_RETURN(PartitionManifest m, DecodePartitionManifest(json));
  if (m.snapshot_id() != snapshot_id || m.partition_id() != partition_id) {
    return absl::DataLossError(absl::StrCat(path, " describes snapshot ",
                                            m.snapshot_id(), " partition ",
                                            m.partition_id()));
  }
  return m;
}

absl::Status FsRepository::VerifyPartition(
    const PartitionManifest& manifest) const {
  const std::string dir =
      Abs(PartitionDir(manifest.snapshot_id(), manifest.partition_id()));
  for (const auto& f : manifest.files()) {
    const std::string path = dir + "/" + f.name();
    std::error_code ec;
    uint64_t size = std::filesystem::file_size(path, ec);
    if (ec) {
      return absl::DataLossError(
          absl::StrCat(path, ": missing (", ec.message(), ")"));
    }
    if (size != f.size_bytes()) {
      return absl::DataLossError(absl::StrCat(
          path, ": size ", size, ", manifest says ", f.size_bytes()));
    }
    ASSIGN_OR_RETURN(std::string sha, fs::Sha256File(path));
    if (sha != f.sha256()) {
      return absl::DataLossError(
          absl::StrCat(path, ": sha256 ", sha, ", manifest says ", f.sha256()));
    }
  }
  return absl::OkStatus();
}

absl::Status FsRepository::CommitClusterManifest(
    const ClusterManifest& manifest) {
  RETURN_IF_ERROR(CheckSnapshotId(manifest.snapshot_id()));
  const std::string path = Abs(ClusterManifestPath(manifest.snapshot_id()));
  if (fs::Exists(path)) {
    return absl::AlreadyExistsError(
        absl::StrCat("snapshot ", manifest.snapshot_id(),
                     " already has a cluster manifest"));
  }
  RETURN_IF_ERROR(fs::CreateDirs(fs::Dirname(path)));
  ClusterManifest m = manifest;
  m.set_format_version(kManifestFormatVersion);
  return fs::WriteFileAtomically(path, EncodeClusterManifest(m));
}

absl::StatusOr<ClusterManifest> FsRepository::ReadClusterManifest(
    const std::string& snapshot_id) const {
  RETURN_IF_ERROR(CheckSnapshotId(snapshot_id));
  const std::string path = Abs(ClusterManifestPath(snapshot_id));
  if (!fs::Exists(path)) {
    return absl::NotFoundError(
        absl::StrCat("snapshot ", snapshot_id, " has no cluster manifest"));
  }
  ASSIGN_OR_RETURN(std::string json, fs::ReadFile(path));
  return DecodeClusterManifest(json);
}

absl::Status FsRepository::DeleteUncommittedSnapshot(
    const std::string& snapshot_id) {
  RETURN_IF_ERROR(CheckSnapshotId(snapshot_id));
  const std::string dir = Abs("snapshots/" + snapshot_id);
  if (!fs::Exists(dir)) return absl::OkStatus();
  if (fs::Exists(Abs(ClusterManifestPath(snapshot_id)))) {
    return absl::FailedPreconditionError(absl::StrCat(
        "snapshot ", snapshot_id, " is committed; it is not rolled back"));
  }
  // Rename first, so a crash mid-removal leaves a hidden directory (never a
  // half-deleted snapshot that looks like one), then remove it.
  const std::string doomed = Abs(
      absl::StrCat("snapshots/.", snapshot_id, ".deleting-", RandomSuffix()));
  if (::rename(dir.c_str(), doomed.c_str()) != 0) {
    return fs::ErrnoStatus("rename to " + doomed, dir);
  }
  RETURN_IF_ERROR(fs::SyncDir(Abs("snapshots")));
  return fs::RemoveAll(doomed);
}

absl::StatusOr<std::unique_ptr<Repository>> OpenRepository(
    const std::string& uri, const RepositoryOptions& options) {
  std::string path = uri;
  if (absl::StartsWith(uri, "file://")) {
    path = uri.substr(7);
    if (path.empty() || path[0] != '/') {
      return absl::InvalidArgumentError(absl::StrCat(
          "repository URI ", Quote(uri), " must be file:///absolute/path"));
    }
  } else if (uri.find("://") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("repository URI ", Quote(uri),
                     ": unsupported scheme (only a path or file:// for now)"));
  }
  ASSIGN_OR_RETURN(auto repo, FsRepository::Open(path, options));
  return std::unique_ptr<Repository>(std::move(repo));
}

}  // namespace shutter::snapshot
