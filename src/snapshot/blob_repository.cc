#include "snapshot/blob_repository.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/error_reason.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "snapshot/file_hash_cache.h"
#include "snapshot/manifest.h"
#include "snapshot/sigv4.h"
#include "spdlog/spdlog.h"

namespace shutter::snapshot {

using shutter::v1::ClusterManifest;
using shutter::v1::PartitionManifest;

namespace {
constexpr char kManifestName[] = "MANIFEST.json";
constexpr char kClusterManifestName[] = "CLUSTER_MANIFEST.json";
constexpr char kIdentityKey[] = "REPOSITORY_ID";
constexpr char kFormatKey[] = "REPOSITORY_FORMAT";
constexpr char kGcLockKey[] = "locks/gc";
constexpr char kPublishLockPrefix[] = "locks/publish/";
constexpr char kBlobPrefix[] = "blobs/";
constexpr char kSnapshotsPrefix[] = "snapshots/";

absl::Status CheckSnapshotId(const std::string& id) {
  return CheckSafeId("snapshot id", id);
}

bool IsPartitionManifestKey(absl::string_view key) {
  return absl::StartsWith(key, kSnapshotsPrefix) &&
         absl::EndsWith(key, absl::StrCat("/", kManifestName)) &&
         key.find("/partitions/") != absl::string_view::npos &&
         key.find("/attempts/") == absl::string_view::npos;
}

bool IsClusterManifestKey(absl::string_view key) {
  return absl::StartsWith(key, kSnapshotsPrefix) &&
         absl::EndsWith(key, absl::StrCat("/", kClusterManifestName));
}

// "snapshots/<id>/..." -> "<id>".
std::string SnapshotIdOfKey(absl::string_view key) {
  absl::string_view rest = key.substr(strlen(kSnapshotsPrefix));
  return std::string(rest.substr(0, rest.find('/')));
}

// Decodes the partition manifest stored at `key`: file names must be safe
// path components, and every file gets its object key (format 1 manifests
// name none: the file sits next to the manifest). Errors name `key`.
absl::StatusOr<PartitionManifest> DecodeStoredManifest(absl::string_view key,
                                                       absl::string_view json) {
  auto decoded = DecodePartitionManifest(json);
  if (!decoded.ok()) {
    return absl::Status(decoded.status().code(),
                        absl::StrCat(key, ": ", decoded.status().message()));
  }
  PartitionManifest m = std::move(decoded).value();
  const std::string dir =
      Repository::PartitionDir(m.snapshot_id(), m.partition_id());
  for (auto& f : *m.mutable_files()) {
    if (!IsSafePathComponent(f.name())) {
      return absl::DataLossError(
          absl::StrCat(key, " lists a file named ", Quote(f.name())));
    }
    if (f.object_key().empty()) f.set_object_key(dir + "/" + f.name());
    if (absl::Status s = CheckBlobKey(f.object_key()); !s.ok()) {
      return absl::DataLossError(absl::StrCat(key, ": ", s.message()));
    }
  }
  return m;
}

BlobStore::PutOptions IfAbsent() {
  BlobStore::PutOptions o;
  o.if_absent = true;
  return o;
}

// Removes the objects (best effort) and logs what could not be removed.
void DeleteQuietly(BlobStore* store, const std::vector<std::string>& keys) {
  for (const std::string& k : keys) {
    absl::Status s = store->Delete(k);
    if (!s.ok()) spdlog::warn("cannot delete {}: {}", k, s.ToString());
  }
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
  return absl::StrCat("snapshots/", snapshot_id, "/", kClusterManifestName);
}

std::string BlobRepository::BlobKey(const std::string& sha256) {
  return absl::StrCat(kBlobPrefix, "sha256/", sha256.substr(0, 2), "/", sha256);
}

bool BlobRepository::IsImmutableFile(const std::string& name) {
  return absl::EndsWith(name, ".sst") || absl::EndsWith(name, ".blob");
}

BlobRepository::BlobRepository(std::unique_ptr<BlobStore> store,
                               const RepositoryOptions& options)
    : store_(std::move(store)), options_(options) {
  if (options.total_bytes_per_second > 0) {
    total_limiter_ =
        std::make_unique<RateLimiter>(options.total_bytes_per_second);
  }
}

absl::StatusOr<std::unique_ptr<BlobRepository>> BlobRepository::Open(
    std::unique_ptr<BlobStore> store, const RepositoryOptions& options) {
  std::unique_ptr<BlobRepository> repo(
      new BlobRepository(std::move(store), options));
  RETURN_IF_ERROR(repo->InitFormat(options.create_if_missing));
  return repo;
}

absl::Status BlobRepository::InitFormat(bool create) {
  if (create) {
    // Commit points rely on only-if-absent puts. Some S3-compatible stores
    // ignore If-None-Match and overwrite: refuse them before anything else
    // is written to one (the probe's own key is removed again).
    const std::string probe =
        absl::StrCat("locks/conditional-write-probe-", RandomHex(8));
    RETURN_IF_ERROR(store_->Put(probe, "1", IfAbsent()));
    absl::Status second = store_->Put(probe, "2", IfAbsent());
    DeleteQuietly(store_.get(), {probe});
    if (second.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "repository ", Describe(),
          " ignores conditional writes (a second If-None-Match: * put of "
          "the same key succeeded); Shutter's commit points need them "
          "(AWS S3, MinIO, Ceph RGW Reef+ and moto honour them)"));
    }
    if (!absl::IsAlreadyExists(second)) return second;
  }
  auto format = store_->Get(kFormatKey);
  if (format.ok()) {
    uint32_t v = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*format), &v)) {
      return absl::DataLossError(absl::StrCat(
          Describe(), ": ", kFormatKey, " is malformed: ", Quote(*format)));
    }
    if (v > kRepositoryFormat) {
      return absl::FailedPreconditionError(
          absl::StrCat("repository ", Describe(), " has format ", v,
                       "; this build reads formats 1 to ", kRepositoryFormat,
                       ": upgrade Shutter"));
    }
    if (v < kRepositoryFormat && create) {
      RETURN_IF_ERROR(
          store_->Put(kFormatKey, absl::StrCat(kRepositoryFormat, "\n"), {}));
    }
  } else if (!absl::IsNotFound(format.status())) {
    return format.status();
  } else if (create) {
    // No format marker: a new repository, or a format 1 one (which has an
    // identity). Format 1 snapshots stay readable as they are (their
    // manifests name no object keys; files sit next to them), so the
    // upgrade is only the marker.
    if (ReadIdentity().ok()) {
      spdlog::info(
          "repository {} has format 1; upgrading it to format {} in "
          "place (existing snapshots stay readable)",
          Describe(), kRepositoryFormat);
    }
    absl::Status s = store_->Put(
        kFormatKey, absl::StrCat(kRepositoryFormat, "\n"), IfAbsent());
    if (!s.ok() && !absl::IsAlreadyExists(s)) return s;
  }
  if (create && absl::IsNotFound(ReadIdentity().status())) {
    absl::Status s = store_->Put(kIdentityKey,
                                 absl::StrCat(RandomHex(16), "\n"), IfAbsent());
    if (!s.ok() && !absl::IsAlreadyExists(s)) return s;
    RETURN_IF_ERROR(ReadIdentity().status());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> BlobRepository::ReadIdentity() const {
  auto id = store_->Get(kIdentityKey);
  if (absl::IsNotFound(id.status())) {
    return absl::NotFoundError(absl::StrCat("repository ", Describe(),
                                            " has no identity (", kIdentityKey,
                                            " is missing)"));
  }
  if (!id.ok()) return id.status();
  std::string v(absl::StripAsciiWhitespace(*id));
  if (v.size() != 32 ||
      v.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return absl::DataLossError(absl::StrCat(Describe(), "/", kIdentityKey,
                                            " is malformed: expected 32 hex "
                                            "digits"));
  }
  return v;
}

absl::StatusOr<bool> BlobRepository::GcLockHeld() const {
  auto lock = store_->Head(kGcLockKey);
  if (absl::IsNotFound(lock.status())) return false;
  if (!lock.ok()) return lock.status();
  return lock->modified > absl::Now() - options_.lock_stale_after;
}

namespace {
absl::Status NotPublished(const std::string& snapshot_id, uint32_t partition_id,
                          const std::string& key) {
  return absl::NotFoundError(absl::StrCat("partition ", partition_id,
                                          " of snapshot ", snapshot_id,
                                          " is not published (no ", key, ")"));
}

ManifestDigest DigestOf(absl::string_view bytes) {
  return ManifestDigest{sigv4::HexSha256(bytes), bytes.size()};
}

// A content-addressed file stored (`stored`: this publish wrote it) or
// found in the repository (it was there, or a concurrent publish won).
void CountStored(bool stored, uint64_t size, PublishStats* stats) {
  if (stored) {
    ++stats->files_uploaded;
    stats->uploaded_bytes += size;
  } else {
    ++stats->files_reused;
    stats->reused_bytes += size;
  }
}
}  // namespace

absl::Status BlobRepository::StoreByContent(const std::string& path,
                                            const std::string& incoming_key,
                                            const BlobStore::PutOptions& put,
                                            shutter::v1::FileEntry* f,
                                            PublishStats* stats) {
  FileHashCache* const cache = options_.hash_cache;
  std::optional<std::string> sha;
  if (cache != nullptr) sha = cache->Lookup(path);
  std::error_code ec;
  uint64_t size = std::filesystem::file_size(path, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("stat ", path, ": ", ec.message()));
  }
  // 1. The SHA-256, reading the file at most once. A file new to the cache
  // is new on this host, so most likely to the repository too: it is read
  // into memory (small) or uploaded to `incoming_key` while hashed.
  std::string data;  // read into memory
  bool in_memory = false;
  bool incoming = false;  // already uploaded to incoming_key
  if (sha) {
    ++stats->files_hash_cached;
  } else if (cache != nullptr && size <= store_->WholeFilePutLimit()) {
    ASSIGN_OR_RETURN(data, fs::ReadFile(path));
    in_memory = true;
    size = data.size();
    fs::Sha256 hash;
    hash.Update(data.data(), data.size());
    sha = hash.HexDigest();
    stats->local_bytes_read += size;
  } else if (cache != nullptr) {
    ASSIGN_OR_RETURN(BlobStore::PutResult r,
                     store_->PutFile(incoming_key, path, put));
    incoming = true;
    size = r.size;
    sha = r.sha256;
    stats->local_bytes_read += size;
  } else {
    ASSIGN_OR_RETURN(sha, fs::Sha256File(path));
    stats->local_bytes_read += size;
  }
  // 2. Stored under its content key unless an object of that size is there
  // (a same-key object of the wrong size is corrupt: replaced).
  const std::string key = BlobKey(*sha);
  auto head = store_->Head(key);
  if (!head.ok() && !absl::IsNotFound(head.status())) return head.status();
  absl::Status stored = absl::AlreadyExistsError("");
  if (!head.ok() || head->size != size) {
    BlobStore::PutOptions o = put;
    o.if_absent = !head.ok();
    o.sha256 = *sha;
    if (incoming) {
      stored = store_->Move(incoming_key, key, o.if_absent);
    } else if (in_memory) {
      stored = store_->Put(key, data, o);
    } else {
      stored = store_->PutFile(key, path, o).status();
      if (stored.ok() || absl::IsAlreadyExists(stored)) {
        stats->local_bytes_read += size;
      }
    }
    // ALREADY_EXISTS: a concurrent publish stored it first.
    if (!stored.ok() && !absl::IsAlreadyExists(stored)) return stored;
  } else if (incoming) {
    RETURN_IF_ERROR(store_->Delete(incoming_key));  // the upload was spare
  }
  CountStored(stored.ok(), size, stats);
  if (cache != nullptr) cache->Insert(path, *sha);
  f->set_size_bytes(size);
  f->set_sha256(*sha);
  f->set_object_key(key);
  return absl::OkStatus();
}

absl::StatusOr<PartitionManifest> BlobRepository::PublishPartition(
    const PartitionManifest& header, const std::string& local_dir,
    const std::function<absl::Status()>& precommit, PublishStats* stats_out) {
  RETURN_IF_ERROR(CheckSnapshotId(header.snapshot_id()));
  const std::string manifest_key =
      PartitionManifestPath(header.snapshot_id(), header.partition_id());
  auto already = [&] {
    return absl::AlreadyExistsError(
        absl::StrCat("partition ", header.partition_id(), " of snapshot ",
                     header.snapshot_id(), " is already published"));
  };
  if (store_->Head(manifest_key).ok()) return already();

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
  for (const std::string& name : names) {
    if (name == kManifestName || !IsSafePathComponent(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(local_dir, " contains a file named ", Quote(name),
                       ", which cannot be published"));
    }
  }

  const std::string attempt = RandomHex(8);
  const std::string attempt_prefix =
      absl::StrCat(PartitionDir(header.snapshot_id(), header.partition_id()),
                   "/attempts/", attempt, "/");
  const std::string lock_key =
      absl::StrCat(kPublishLockPrefix, header.snapshot_id(), ".",
                   header.partition_id(), ".", attempt);
  std::vector<std::string> attempt_keys;
  bool committed = false;

  std::unique_ptr<RateLimiter> stream_limiter;
  if (options_.stream_bytes_per_second > 0) {
    stream_limiter =
        std::make_unique<RateLimiter>(options_.stream_bytes_per_second);
  }
  BlobStore::PutOptions put;
  put.limiters = {stream_limiter.get(), total_limiter_.get()};
  PublishStats stats;

  auto publish = [&]() -> absl::StatusOr<PartitionManifest> {
    // Register with the GC protocol before deciding to reuse any object.
    const std::string lock_body = absl::StrFormat(
        "{\"node_id\": \"%s\", \"instance\": \"%s\", \"snapshot_id\": "
        "\"%s\", \"partition_id\": %u}\n",
        header.node_id(), options_.publisher_instance, header.snapshot_id(),
        header.partition_id());
    RETURN_IF_ERROR(store_->Put(lock_key, lock_body, {}));
    absl::Time lock_written = absl::Now();
    ASSIGN_OR_RETURN(bool gc_running, GcLockHeld());
    if (gc_running) {
      return WithReason(
          absl::AbortedError(absl::StrCat("repository ", Describe(),
                                          " is being garbage-collected (",
                                          kGcLockKey, "); try again")),
          ErrorReason::kRepositoryBusy);
    }
    PartitionManifest m = header;
    m.set_format_version(kManifestFormatVersion);
    m.clear_files();
    uint64_t total = 0;
    for (const std::string& name : names) {
      const std::string path = local_dir + "/" + name;
      auto* f = m.add_files();
      f->set_name(name);
      if (IsImmutableFile(name)) {
        const std::string incoming =
            absl::StrCat(attempt_prefix, "incoming/", name);
        attempt_keys.push_back(incoming);  // removed if the attempt fails
        RETURN_IF_ERROR(StoreByContent(path, incoming, put, f, &stats));
      } else {
        const std::string key = attempt_prefix + name;
        attempt_keys.push_back(key);
        ASSIGN_OR_RETURN(BlobStore::PutResult r,
                         store_->PutFile(key, path, put));
        ++stats.files_uploaded;
        stats.uploaded_bytes += r.size;
        stats.local_bytes_read += r.size;
        f->set_size_bytes(r.size);
        f->set_sha256(r.sha256);
        f->set_object_key(key);
      }
      total += f->size_bytes();
      // Keep the publish lock fresh so a GC never takes it for a dead one.
      if (absl::Now() - lock_written > options_.lock_stale_after / 4) {
        RETURN_IF_ERROR(store_->Put(lock_key, lock_body, {}));
        lock_written = absl::Now();
      }
    }
    m.set_total_bytes(total);
    if (precommit) RETURN_IF_ERROR(precommit());
    const std::string encoded = EncodePartitionManifest(m);
    absl::Status s = store_->Put(manifest_key, encoded, IfAbsent());
    if (absl::IsAlreadyExists(s)) return already();
    RETURN_IF_ERROR(s);
    committed = true;
    stats.manifest = DigestOf(encoded);
    // Files of earlier attempts at this partition (a node that died
    // mid-publish) are debris now that the partition is committed.
    auto attempts = store_->List(
        absl::StrCat(PartitionDir(header.snapshot_id(), header.partition_id()),
                     "/attempts/"));
    if (attempts.ok()) {
      for (const BlobInfo& o : *attempts) {
        if (!absl::StartsWith(o.key, attempt_prefix)) {
          DeleteQuietly(store_.get(), {o.key});
        }
      }
    }
    return m;
  }();
  if (!committed) DeleteQuietly(store_.get(), attempt_keys);
  DeleteQuietly(store_.get(), {lock_key});
  if (stats_out != nullptr) *stats_out = stats;
  return publish;
}

absl::StatusOr<PartitionManifest> BlobRepository::ReadPartitionManifest(
    const std::string& snapshot_id, uint32_t partition_id,
    const std::string& expected_sha256, ManifestDigest* digest) const {
  RETURN_IF_ERROR(CheckSnapshotId(snapshot_id));
  const std::string key = PartitionManifestPath(snapshot_id, partition_id);
  auto json = store_->Get(key);
  if (absl::IsNotFound(json.status())) {
    return NotPublished(snapshot_id, partition_id, key);
  }
  if (!json.ok()) return json.status();
  if (digest != nullptr || !expected_sha256.empty()) {
    ManifestDigest d = DigestOf(*json);
    if (!expected_sha256.empty() && d.sha256 != expected_sha256) {
      return absl::DataLossError(absl::StrCat(
          key, " has SHA-256 ", d.sha256,
          ", not the one the cluster manifest recorded (", expected_sha256,
          "): the partition manifest was altered or replaced"));
    }
    if (digest != nullptr) *digest = std::move(d);
  }
  ASSIGN_OR_RETURN(PartitionManifest m, DecodeStoredManifest(key, *json));
  if (m.snapshot_id() != snapshot_id || m.partition_id() != partition_id) {
    return absl::DataLossError(absl::StrCat(key, " describes snapshot ",
                                            m.snapshot_id(), " partition ",
                                            m.partition_id()));
  }
  return m;
}

absl::StatusOr<uint64_t> BlobRepository::PartitionManifestSize(
    const std::string& snapshot_id, uint32_t partition_id) const {
  RETURN_IF_ERROR(CheckSnapshotId(snapshot_id));
  const std::string key = PartitionManifestPath(snapshot_id, partition_id);
  auto info = store_->Head(key);
  if (absl::IsNotFound(info.status())) {
    return NotPublished(snapshot_id, partition_id, key);
  }
  if (!info.ok()) return info.status();
  return info->size;
}

absl::Status BlobRepository::VerifyPartition(
    const PartitionManifest& manifest) const {
  const std::string dir =
      PartitionDir(manifest.snapshot_id(), manifest.partition_id());
  for (const auto& f : manifest.files()) {
    const std::string where = absl::StrCat(dir, "/", f.name());
    const std::string object = absl::StrCat(" (object ", f.object_key(), ")");
    fs::Sha256 h;
    uint64_t size = 0;
    absl::Status s = store_->Read(f.object_key(), 0, BlobStore::kToEnd,
                                  [&](absl::string_view chunk) {
                                    h.Update(chunk.data(), chunk.size());
                                    size += chunk.size();
                                    return absl::OkStatus();
                                  });
    if (absl::IsNotFound(s)) {
      return absl::DataLossError(absl::StrCat(where, ": missing", object));
    }
    RETURN_IF_ERROR(s);
    if (size != f.size_bytes()) {
      return absl::DataLossError(absl::StrCat(
          where, ": size ", size, ", manifest says ", f.size_bytes(), object));
    }
    const std::string sha = h.HexDigest();
    if (sha != f.sha256()) {
      return absl::DataLossError(absl::StrCat(
          where, ": sha256 ", sha, ", manifest says ", f.sha256(), object));
    }
  }
  return absl::OkStatus();
}

absl::Status BlobRepository::DownloadPartition(
    const PartitionManifest& manifest, const std::string& local_dir,
    const DownloadOptions& options) const {
  for (const auto& f : manifest.files()) {
    if (!IsSafePathComponent(f.name())) {
      return absl::InvalidArgumentError(
          absl::StrCat("manifest lists a file named ", Quote(f.name())));
    }
  }
  RETURN_IF_ERROR(fs::CreateDirs(local_dir));
  std::unique_ptr<RateLimiter> stream_limiter;
  if (options_.stream_bytes_per_second > 0) {
    stream_limiter =
        std::make_unique<RateLimiter>(options_.stream_bytes_per_second);
  }
  const std::vector<RateLimiter*> limiters = {stream_limiter.get(),
                                              total_limiter_.get()};
  auto fetch = [&](const shutter::v1::FileEntry& f) -> absl::Status {
    const std::string path = local_dir + "/" + f.name();
    auto r = store_->GetToFile(f.object_key(), path, limiters);
    if (absl::IsNotFound(r.status())) {
      return absl::DataLossError(
          absl::StrCat(f.object_key(), " (", f.name(), "): missing"));
    }
    if (!r.ok()) {
      return absl::Status(r.status().code(),
                          absl::StrCat(f.object_key(), " (", f.name(),
                                       "): ", r.status().message()));
    }
    if (r->size != f.size_bytes() || r->sha256 != f.sha256()) {
      return absl::DataLossError(
          absl::StrCat(f.object_key(), " (", f.name(), "): got ", r->size,
                       " bytes sha256 ", r->sha256, ", manifest says ",
                       f.size_bytes(), " bytes sha256 ", f.sha256()));
    }
    return options.after_file ? options.after_file(f.name()) : absl::OkStatus();
  };
  // Largest first, so the streams finish together.
  std::vector<const shutter::v1::FileEntry*> files;
  for (const auto& f : manifest.files()) files.push_back(&f);
  std::sort(files.begin(), files.end(), [](const auto* a, const auto* b) {
    return a->size_bytes() > b->size_bytes();
  });
  std::atomic<size_t> next{0};
  absl::Mutex mu;
  absl::Status first_error;
  auto worker = [&] {
    for (size_t i = next++; i < files.size(); i = next++) {
      {
        absl::MutexLock l(&mu);
        if (!first_error.ok()) return;
      }
      absl::Status s = fetch(*files[i]);
      if (!s.ok()) {
        absl::MutexLock l(&mu);
        if (first_error.ok()) first_error = s;
        return;
      }
    }
  };
  const size_t streams = std::min<size_t>(
      files.size(), static_cast<size_t>(std::max(1, options.parallel_files)));
  std::vector<std::thread> threads;
  for (size_t i = 1; i < streams; ++i) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  RETURN_IF_ERROR(first_error);
  return fs::SyncDir(local_dir);
}

absl::Status BlobRepository::CommitClusterManifest(
    const ClusterManifest& manifest) {
  RETURN_IF_ERROR(CheckSnapshotId(manifest.snapshot_id()));
  // Written at this build's version; copied only to set it (a copy of a
  // 100,000-partition manifest takes ~0.1-0.4 s and ~30 MB on the commit's
  // path, so the controller builds it at the version already).
  std::optional<ClusterManifest> versioned;
  if (manifest.format_version() != kManifestFormatVersion) {
    versioned.emplace(manifest);
    versioned->set_format_version(kManifestFormatVersion);
  }
  absl::Status s = store_->Put(
      ClusterManifestPath(manifest.snapshot_id()),
      EncodeClusterManifest(versioned ? *versioned : manifest), IfAbsent());
  if (absl::IsAlreadyExists(s)) {
    return absl::AlreadyExistsError(
        absl::StrCat("snapshot ", manifest.snapshot_id(),
                     " already has a cluster manifest"));
  }
  return s;
}

absl::StatusOr<ClusterManifest> BlobRepository::ReadClusterManifest(
    const std::string& snapshot_id) const {
  RETURN_IF_ERROR(CheckSnapshotId(snapshot_id));
  auto json = store_->Get(ClusterManifestPath(snapshot_id));
  if (absl::IsNotFound(json.status())) {
    return absl::NotFoundError(
        absl::StrCat("snapshot ", snapshot_id, " has no cluster manifest"));
  }
  if (!json.ok()) return json.status();
  return DecodeClusterManifest(*json);
}

absl::Status BlobRepository::DeleteSnapshotObjects(
    const std::string& snapshot_id) {
  ASSIGN_OR_RETURN(
      std::vector<BlobInfo> objects,
      store_->List(absl::StrCat(kSnapshotsPrefix, snapshot_id, "/")));
  // Partition manifests first: a crash midway must never leave a manifest
  // naming files that are gone.
  std::stable_partition(objects.begin(), objects.end(), [](const BlobInfo& o) {
    return IsPartitionManifestKey(o.key);
  });
  for (const BlobInfo& o : objects) RETURN_IF_ERROR(store_->Delete(o.key));
  return absl::OkStatus();
}

absl::Status BlobRepository::DeleteUncommittedSnapshot(
    const std::string& snapshot_id) {
  RETURN_IF_ERROR(CheckSnapshotId(snapshot_id));
  auto head = store_->Head(ClusterManifestPath(snapshot_id));
  if (head.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "snapshot ", snapshot_id, " is committed; it is not rolled back"));
  }
  if (!absl::IsNotFound(head.status())) return head.status();
  return DeleteSnapshotObjects(snapshot_id);
}

absl::Status BlobRepository::DeleteSnapshot(const std::string& snapshot_id) {
  RETURN_IF_ERROR(CheckSnapshotId(snapshot_id));
  // The cluster manifest goes first: from then on it is not a snapshot.
  RETURN_IF_ERROR(store_->Delete(ClusterManifestPath(snapshot_id)));
  return DeleteSnapshotObjects(snapshot_id);
}

absl::StatusOr<std::vector<SnapshotListing>> BlobRepository::ListSnapshots()
    const {
  ASSIGN_OR_RETURN(std::vector<BlobInfo> objects,
                   store_->List(kSnapshotsPrefix));
  std::map<std::string, SnapshotListing> by_id;
  for (const BlobInfo& o : objects) {
    const std::string id = SnapshotIdOfKey(o.key);
    SnapshotListing& l = by_id[id];
    l.snapshot_id = id;
    if (IsClusterManifestKey(o.key)) l.committed = true;
    if (IsPartitionManifestKey(o.key)) ++l.partitions;
  }
  std::vector<SnapshotListing> out;
  for (auto& [id, l] : by_id) out.push_back(std::move(l));
  return out;
}

absl::StatusOr<RepositoryStats> BlobRepository::GetStats() const {
  RepositoryStats st;
  ASSIGN_OR_RETURN(std::vector<BlobInfo> all, store_->List(""));
  absl::flat_hash_map<std::string, uint64_t> size_of;
  std::set<std::string> committed;
  for (const BlobInfo& o : all) {
    ++st.objects;
    st.bytes_stored += o.size;
    size_of[o.key] = o.size;
    if (IsClusterManifestKey(o.key)) committed.insert(SnapshotIdOfKey(o.key));
  }
  std::set<std::string> uncommitted;
  absl::flat_hash_map<std::string, uint32_t> refs;
  for (const BlobInfo& o : all) {
    if (!IsPartitionManifestKey(o.key)) continue;
    const std::string id = SnapshotIdOfKey(o.key);
    if (committed.count(id) == 0) {
      uncommitted.insert(id);
      continue;
    }
    ASSIGN_OR_RETURN(std::string json, store_->Get(o.key));
    ASSIGN_OR_RETURN(PartitionManifest m, DecodeStoredManifest(o.key, json));
    st.logical_bytes += m.total_bytes();
    std::set<std::string> once;  // count a snapshot's reference once
    for (const auto& f : m.files()) once.insert(f.object_key());
    for (const auto& k : once) ++refs[k];
  }
  for (const auto& [k, n] : refs) {
    auto it = size_of.find(k);
    if (n > 1 && it != size_of.end()) st.bytes_shared += it->second;
  }
  st.snapshots = committed.size();
  st.uncommitted_snapshots = uncommitted.size();
  ASSIGN_OR_RETURN(std::vector<IncompleteUpload> uploads,
                   store_->ListIncompleteUploads(""));
  st.incomplete_uploads = uploads.size();
  return st;
}

namespace {
// The string value of "field" in a publish lock's one-line JSON body (ids
// and instances are plain [A-Za-z0-9._/-] text, written by PublishPartition).
std::string LockField(absl::string_view body, absl::string_view field) {
  const std::string needle = absl::StrCat("\"", field, "\": \"");
  const size_t at = body.find(needle);
  if (at == absl::string_view::npos) return "";
  const size_t from = at + needle.size();
  const size_t to = body.find('"', from);
  if (to == absl::string_view::npos) return "";
  return std::string(body.substr(from, to - from));
}
}  // namespace

absl::StatusOr<std::vector<PublishLock>> BlobRepository::ListPublishLocks(
    absl::flat_hash_map<std::string, PublishLock>* known) const {
  ASSIGN_OR_RETURN(std::vector<BlobInfo> objects,
                   store_->List(kPublishLockPrefix));
  std::vector<PublishLock> out;
  for (const BlobInfo& o : objects) {
    if (known != nullptr) {
      // A lock's body never changes (a refresh rewrites the same one).
      auto it = known->find(o.key);
      if (it != known->end()) {
        it->second.modified = o.modified;
        out.push_back(it->second);
        continue;
      }
    }
    auto body = store_->Get(o.key);
    if (absl::IsNotFound(body.status())) continue;  // its publish ended
    RETURN_IF_ERROR(body.status());
    PublishLock l;
    l.key = o.key;
    l.modified = o.modified;
    l.node_id = LockField(*body, "node_id");
    l.instance = LockField(*body, "instance");
    l.snapshot_id = LockField(*body, "snapshot_id");
    const size_t at = body->find("\"partition_id\": ");
    if (at != std::string::npos) {
      const size_t from = at + sizeof("\"partition_id\": ") - 1;
      const size_t to = body->find_first_not_of("0123456789", from);
      (void)absl::SimpleAtoi(body->substr(from, to - from), &l.partition_id);
    }
    if (known != nullptr) (*known)[l.key] = l;
    out.push_back(std::move(l));
  }
  return out;
}

absl::StatusOr<int> BlobRepository::ReleasePublishLocks(
    const std::function<bool(const PublishLock&)>& dead) {
  ASSIGN_OR_RETURN(std::vector<PublishLock> locks, ListPublishLocks());
  int released = 0;
  for (const PublishLock& l : locks) {
    if (!dead(l)) continue;
    RETURN_IF_ERROR(store_->Delete(l.key));
    ++released;
  }
  return released;
}

absl::StatusOr<GcReport> BlobRepository::CollectGarbage(
    const GcOptions& options) {
  GcReport report;
  const std::string owner = options.owner.empty() ? "gc" : options.owner;
  bool locked = false;
  if (!options.dry_run) {
    const std::string body = absl::StrCat(owner, "\n");
    absl::Status s = store_->Put(kGcLockKey, body, IfAbsent());
    if (absl::IsAlreadyExists(s)) {
      auto holder = store_->Get(kGcLockKey);
      auto head = store_->Head(kGcLockKey);
      const bool mine = holder.ok() && absl::StripAsciiWhitespace(*holder) ==
                                           absl::string_view(owner);
      const bool stale =
          head.ok() && head->modified < absl::Now() - options_.lock_stale_after;
      if (!mine && !stale) {
        return absl::FailedPreconditionError(absl::StrCat(
            "another garbage collection (",
            holder.ok() ? Quote(absl::StripAsciiWhitespace(*holder))
                        : std::string("?"),
            ") holds ", Describe(), "/", kGcLockKey, "; try again later"));
      }
      if (stale && !mine) {
        spdlog::warn("taking over the stale GC lock of {}",
                     holder.ok() ? Quote(*holder) : std::string("?"));
      }
      s = store_->Put(kGcLockKey, body, {});
    }
    RETURN_IF_ERROR(s);
    locked = true;
  }
  auto result = [&]() -> absl::Status {
    // Wait for publishes that registered before the lock was taken.
    const absl::Time wait_until = absl::Now() + options.wait_for_publishes;
    absl::flat_hash_map<std::string, PublishLock> read;  // bodies read once
    while (!options.dry_run) {
      ASSIGN_OR_RETURN(std::vector<PublishLock> locks, ListPublishLocks(&read));
      const absl::Time stale = absl::Now() - options_.lock_stale_after;
      size_t live = 0;
      for (const PublishLock& l : locks) {
        if (l.modified < stale) {
          DeleteQuietly(store_.get(), {l.key});
        } else if (options.publish_lock_dead && options.publish_lock_dead(l)) {
          // Its attempt is over (the caller knows): not worth waiting for.
          spdlog::info(
              "garbage collection: removing the publish lock {} of node {} "
              "(snapshot {} partition {}): that attempt is over",
              l.key, l.node_id, l.snapshot_id, l.partition_id);
          DeleteQuietly(store_.get(), {l.key});
          ++report.publish_locks_released;
        } else {
          ++live;
        }
      }
      if (live == 0) break;
      if (absl::Now() > wait_until) {
        return absl::UnavailableError(absl::StrCat(
            live, " publish(es) still in flight in ", Describe(),
            " after waiting ", absl::FormatDuration(options.wait_for_publishes),
            "; garbage collection not run"));
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    // Mark: every object any partition manifest references (committed or
    // not: a running snapshot's published partitions count), plus the
    // manifests themselves. A manifest that cannot be read stops the GC:
    // sweeping on an incomplete mark could delete live data.
    ASSIGN_OR_RETURN(std::vector<BlobInfo> snapshot_objects,
                     store_->List(kSnapshotsPrefix));
    absl::flat_hash_set<std::string> live;
    for (const BlobInfo& o : snapshot_objects) {
      if (IsClusterManifestKey(o.key)) {
        live.insert(o.key);
        continue;
      }
      if (!IsPartitionManifestKey(o.key)) continue;
      live.insert(o.key);
      auto json = store_->Get(o.key);
      if (absl::IsNotFound(json.status())) continue;  // deleted meanwhile
      RETURN_IF_ERROR(json.status());
      auto m = DecodeStoredManifest(o.key, *json);
      if (!m.ok()) {
        return absl::DataLossError(
            absl::StrCat("garbage collection stopped before deleting "
                         "anything: ",
                         m.status().message()));
      }
      ++report.manifests_read;
      for (const auto& f : m->files()) live.insert(f.object_key());
    }
    ASSIGN_OR_RETURN(std::vector<BlobInfo> blobs, store_->List(kBlobPrefix));
    std::vector<const BlobInfo*> candidates;
    for (const auto* list : {&blobs, &snapshot_objects}) {
      for (const BlobInfo& o : *list) {
        ++report.objects_scanned;
        if (live.count(o.key) > 0) {
          ++report.objects_referenced;
          continue;
        }
        candidates.push_back(&o);
      }
    }
    if (options.test_before_sweep) options.test_before_sweep();
    const absl::Time cutoff = absl::Now() - options.grace;
    absl::Time refreshed = absl::Now();
    const absl::Time sweep_until = absl::Now() + options.max_sweep;
    for (const BlobInfo* o : candidates) {
      if (o->modified > cutoff) {
        ++report.objects_too_young;
        continue;
      }
      if (!options.dry_run && absl::Now() > sweep_until) {
        // Publishers wait while the lock is held: let them in; the next
        // run deletes the rest.
        report.sweep_incomplete = true;
        spdlog::warn(
            "garbage collection: stopping the sweep after {} (--max-sweep); "
            "{} objects deleted, the rest at the next run",
            absl::FormatDuration(options.max_sweep), report.objects_deleted);
        break;
      }
      if (!options.dry_run) {
        if (absl::Now() - refreshed > options_.lock_stale_after / 4) {
          RETURN_IF_ERROR(
              store_->Put(kGcLockKey, absl::StrCat(owner, "\n"), {}));
          refreshed = absl::Now();
        }
        RETURN_IF_ERROR(store_->Delete(o->key));
      }
      ++report.objects_deleted;
      report.bytes_deleted += o->size;
      if (!options.dry_run && options.test_after_delete) {
        options.test_after_delete(report.objects_deleted);
      }
    }
    // Multipart uploads whose writer died (a node killed mid-upload):
    // their parts are billed and invisible to listings. Younger ones may
    // still be running.
    ASSIGN_OR_RETURN(std::vector<IncompleteUpload> uploads,
                     store_->ListIncompleteUploads(""));
    for (const IncompleteUpload& u : uploads) {
      if (u.initiated > cutoff) {
        ++report.uploads_too_young;
        continue;
      }
      if (!options.dry_run) RETURN_IF_ERROR(store_->AbortIncompleteUpload(u));
      ++report.uploads_aborted;
    }
    return absl::OkStatus();
  }();
  if (locked) DeleteQuietly(store_.get(), {kGcLockKey});
  RETURN_IF_ERROR(result);
  return report;
}

absl::StatusOr<std::unique_ptr<Repository>> OpenRepositoryOn(
    std::unique_ptr<BlobStore> store, const RepositoryOptions& options) {
  ASSIGN_OR_RETURN(auto repo, BlobRepository::Open(std::move(store), options));
  return std::unique_ptr<Repository>(std::move(repo));
}

}  // namespace shutter::snapshot
