#include "snapshot/fs_blob_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/rate_limiter.h"
#include "common/status_macros.h"
#include "common/text.h"

namespace shutter::snapshot {
namespace {

constexpr char kTempDir[] = ".tmp";
// Temporary files older than this are debris of a crashed writer.
constexpr absl::Duration kTempMaxAge = absl::Hours(24);

absl::Time MTime(const struct stat& st) {
  return absl::FromUnixNanos(static_cast<int64_t>(st.st_mtim.tv_sec) *
                                 1000000000 +
                             st.st_mtim.tv_nsec);
}

// Creates every missing directory from `root` down to `dir` (a path under
// root), fsyncing each parent so the new entries are durable.
absl::Status MakeDurableDirs(const std::string& root, const std::string& dir) {
  if (dir.size() <= root.size()) return absl::OkStatus();
  if (fs::Exists(dir)) return absl::OkStatus();
  const std::string parent = fs::Dirname(dir);
  RETURN_IF_ERROR(MakeDurableDirs(root, parent));
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return fs::ErrnoStatus("mkdir", dir);
  }
  return fs::SyncDir(parent);
}

}  // namespace

absl::Status CheckBlobKey(absl::string_view key) {
  if (key.empty() || key.size() > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("blob key ", Quote(key), " must be 1 to 1024 bytes"));
  }
  for (absl::string_view seg : absl::StrSplit(key, '/')) {
    if (seg.empty() || seg[0] == '.' ||
        seg.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                              "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-=") !=
            absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "blob key ", Quote(key),
          ": segments must be non-empty, not start with '.', and use only "
          "letters, digits and ._-="));
    }
  }
  return absl::OkStatus();
}

absl::Status BlobStore::Move(const std::string& from, const std::string& to,
                             bool if_absent) {
  ASSIGN_OR_RETURN(std::string data, Get(from));
  PutOptions o;
  o.if_absent = if_absent;
  absl::Status put = Put(to, data, o);
  if (!put.ok() && !absl::IsAlreadyExists(put)) return put;
  RETURN_IF_ERROR(Delete(from));
  return put;
}

absl::StatusOr<std::string> BlobStore::Get(const std::string& key,
                                           uint64_t offset,
                                           uint64_t length) const {
  std::string out;
  RETURN_IF_ERROR(Read(key, offset, length, [&](absl::string_view chunk) {
    out.append(chunk.data(), chunk.size());
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<BlobStore::PutResult> BlobStore::GetToFile(
    const std::string& key, const std::string& local_path,
    const std::vector<RateLimiter*>& limiters) const {
  PutResult r;
  fs::Sha256 h;
  RETURN_IF_ERROR(fs::WriteFileSynced(local_path, [&](const auto& append) {
    return Read(key, 0, kToEnd, [&](absl::string_view chunk) {
      for (RateLimiter* l : limiters) {
        if (l != nullptr) l->Request(chunk.size());
      }
      h.Update(chunk.data(), chunk.size());
      r.size += chunk.size();
      return append(chunk);
    });
  }));
  r.sha256 = h.HexDigest();
  return r;
}

absl::StatusOr<std::unique_ptr<FsBlobStore>> FsBlobStore::Open(
    const std::string& root, bool create) {
  if (root.empty()) {
    return absl::InvalidArgumentError("repository path is empty");
  }
  std::error_code ec;
  std::string abs = std::filesystem::absolute(root, ec).lexically_normal();
  if (ec) abs = root;
  while (abs.size() > 1 && abs.back() == '/') abs.pop_back();
  if (create) RETURN_IF_ERROR(fs::CreateDirs(abs));
  std::unique_ptr<FsBlobStore> store(new FsBlobStore(abs));
  // Temporary files of writers that crashed long ago.
  const std::string tmp = abs + "/" + kTempDir;
  const absl::Time cutoff = absl::Now() - kTempMaxAge;
  for (const auto& e : std::filesystem::directory_iterator(tmp, ec)) {
    struct stat st;
    if (::lstat(e.path().c_str(), &st) == 0 && MTime(st) < cutoff) {
      ::unlink(e.path().c_str());
    }
  }
  return store;
}

std::string FsBlobStore::TempPath() const {
  return absl::StrCat(root_, "/", kTempDir, "/", RandomHex(8));
}

absl::Status FsBlobStore::Install(const std::string& tmp,
                                  const std::string& key, bool if_absent) {
  const std::string path = LocalPath(key);
  const std::string dir = fs::Dirname(path);
  // A concurrent Delete removes directories it empties: one may vanish
  // between our mkdir and the rename (NOT_FOUND / ENOENT); start over.
  for (int attempt = 0;; ++attempt) {
    absl::Status dirs = MakeDurableDirs(root_, dir);
    if (absl::IsNotFound(dirs) && attempt < 100) continue;
    RETURN_IF_ERROR(dirs);
    int rc = if_absent ? ::link(tmp.c_str(), path.c_str())
                       : ::rename(tmp.c_str(), path.c_str());
    if (rc == 0) break;
    if (errno == ENOENT && attempt < 100) continue;
    if (errno == EEXIST) {
      ::unlink(tmp.c_str());
      return absl::AlreadyExistsError(
          absl::StrCat("object ", key, " already exists in ", root_));
    }
    absl::Status s = fs::ErrnoStatus("install object at", path);
    ::unlink(tmp.c_str());
    return s;
  }
  if (if_absent) ::unlink(tmp.c_str());
  return fs::SyncDir(dir);
}

absl::Status FsBlobStore::Move(const std::string& from, const std::string& to,
                               bool if_absent) {
  RETURN_IF_ERROR(CheckBlobKey(from));
  RETURN_IF_ERROR(CheckBlobKey(to));
  const std::string path = LocalPath(from);
  if (::access(path.c_str(), F_OK) != 0) {
    return absl::NotFoundError(
        absl::StrCat("object ", from, " is missing from ", root_));
  }
  // The file was fsynced when it was written: a rename (or a link and an
  // unlink) and the directories' fsyncs make the move durable.
  RETURN_IF_ERROR(Install(path, to, if_absent));
  return LeftDir(fs::Dirname(path));
}

absl::Status FsBlobStore::LeftDir(std::string dir) const {
  absl::Status synced = fs::SyncDir(dir);
  // A concurrent Delete or Move may have removed the directory our entry
  // left: then the entry is gone with it.
  if (absl::IsNotFound(synced)) return absl::OkStatus();
  RETURN_IF_ERROR(synced);
  while (dir.size() > root_.size() && ::rmdir(dir.c_str()) == 0) {
    dir = fs::Dirname(dir);
  }
  return absl::OkStatus();
}

absl::StatusOr<BlobStore::PutResult> FsBlobStore::PutFile(
    const std::string& key, const std::string& local_path,
    const PutOptions& options) {
  RETURN_IF_ERROR(CheckBlobKey(key));
  RETURN_IF_ERROR(MakeDurableDirs(root_, root_ + "/" + kTempDir));
  const std::string tmp = TempPath();
  ASSIGN_OR_RETURN(fs::CopyResult c,
                   fs::CopyFileSynced(local_path, tmp, options.limiters));
  if (!options.sha256.empty() && c.sha256 != options.sha256) {
    ::unlink(tmp.c_str());
    return absl::DataLossError(
        absl::StrCat(local_path, " changed while it was uploaded: sha256 ",
                     c.sha256, ", expected ", options.sha256));
  }
  RETURN_IF_ERROR(Install(tmp, key, options.if_absent));
  return PutResult{c.size_bytes, c.sha256};
}

absl::Status FsBlobStore::Put(const std::string& key, absl::string_view data,
                              const PutOptions& options) {
  RETURN_IF_ERROR(CheckBlobKey(key));
  RETURN_IF_ERROR(MakeDurableDirs(root_, root_ + "/" + kTempDir));
  const std::string tmp = TempPath();
  RETURN_IF_ERROR(fs::WriteFileSynced(tmp, [&](const auto& append) {
    for (RateLimiter* l : options.limiters) {
      if (l != nullptr) l->Request(data.size());
    }
    return append(data);
  }));
  return Install(tmp, key, options.if_absent);
}

absl::Status FsBlobStore::Read(
    const std::string& key, uint64_t offset, uint64_t length,
    const std::function<absl::Status(absl::string_view)>& sink) const {
  RETURN_IF_ERROR(CheckBlobKey(key));
  const std::string path = LocalPath(key);
  absl::Status s = fs::ReadFileChunks(path, offset, length, sink);
  if (absl::IsNotFound(s)) {
    return absl::NotFoundError(
        absl::StrCat("object ", key, " is missing from ", root_));
  }
  return s;
}

absl::StatusOr<BlobInfo> FsBlobStore::Head(const std::string& key) const {
  RETURN_IF_ERROR(CheckBlobKey(key));
  struct stat st;
  const std::string path = LocalPath(key);
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return absl::NotFoundError(
          absl::StrCat("object ", key, " is missing from ", root_));
    }
    return fs::ErrnoStatus("stat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::NotFoundError(
        absl::StrCat(path, " is not a regular file, so not an object"));
  }
  return BlobInfo{key, static_cast<uint64_t>(st.st_size), MTime(st)};
}

absl::StatusOr<std::vector<BlobInfo>> FsBlobStore::List(
    const std::string& prefix) const {
  std::vector<BlobInfo> out;
  const size_t slash = prefix.rfind('/');
  const std::string start =
      slash == std::string::npos ? "" : prefix.substr(0, slash);
  // Depth-first over directories (relative paths). A directory that
  // vanishes while we walk (its last object was deleted) held nothing we
  // could list, so it is skipped; any other error fails the listing: a
  // partial listing must never pass for a complete one (GC marks from it).
  std::vector<std::string> pending = {start};
  while (!pending.empty()) {
    const std::string rel = std::move(pending.back());
    pending.pop_back();
    const std::string dir = rel.empty() ? root_ : root_ + "/" + rel;
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) {
      if (errno == ENOENT || errno == ENOTDIR) continue;
      return fs::ErrnoStatus("list", dir);
    }
    // readdir(3) reports errors only through errno: clear it before every
    // call (a skipped entry's fstatat may have set it).
    for (;;) {
      errno = 0;
      struct dirent* e = ::readdir(d);
      if (e == nullptr) break;
      const std::string name = e->d_name;
      if (name.empty() || name[0] == '.') continue;
      std::string key = rel.empty() ? name : rel + "/" + name;
      // Prune subtrees that cannot hold a key with this prefix.
      const size_t n = std::min(key.size(), prefix.size());
      if (key.compare(0, n, prefix, 0, n) != 0) continue;
      struct stat st;
      if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  // deleted meanwhile
        const int err = errno;
        ::closedir(d);
        errno = err;
        return fs::ErrnoStatus("stat", dir + "/" + name);
      }
      if (S_ISDIR(st.st_mode)) {
        pending.push_back(std::move(key));
      } else if (S_ISREG(st.st_mode) && absl::StartsWith(key, prefix) &&
                 CheckBlobKey(key).ok()) {  // other names are not ours
        out.push_back(BlobInfo{std::move(key),
                               static_cast<uint64_t>(st.st_size), MTime(st)});
      }
    }
    const int err = errno;
    ::closedir(d);
    if (err != 0) {
      errno = err;
      return fs::ErrnoStatus("list", dir);
    }
  }
  std::sort(out.begin(), out.end(),
            [](const BlobInfo& a, const BlobInfo& b) { return a.key < b.key; });
  return out;
}

absl::Status FsBlobStore::Delete(const std::string& key) {
  RETURN_IF_ERROR(CheckBlobKey(key));
  const std::string path = LocalPath(key);
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return absl::OkStatus();
    return fs::ErrnoStatus("delete", path);
  }
  return LeftDir(fs::Dirname(path));
}

}  // namespace shutter::snapshot
