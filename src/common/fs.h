#ifndef SHUTTER_COMMON_FS_H_
#define SHUTTER_COMMON_FS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace shutter {
class RateLimiter;
}

// Small POSIX file helpers with crash-safety in mind. All functions are
// thread-safe (they share no state) and return errno-derived statuses whose
// message names the path; ENOSPC maps to RESOURCE_EXHAUSTED.
namespace shutter::fs {

// Converts the current errno into a status mentioning `what` and `path`.
absl::Status ErrnoStatus(absl::string_view what, absl::string_view path);

// fsyncs a directory so that entries created or renamed in it are durable.
absl::Status SyncDir(const std::string& dir);

// fsyncs a regular file.
absl::Status SyncFile(const std::string& path);

// Writes `contents` to `path` crash-safely: into "<path>.tmp", fsync, rename
// over `path`, fsync the parent directory. On failure the temp file is
// removed and `path` is untouched.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view contents);

// Creates `path` with `contents`, durably, only if it does not exist
// (write a temp file, fsync, link(2) into place, fsync the directory):
// ALREADY_EXISTS if it does, whoever wrote it. Never leaves a partial file.
absl::Status CreateFileExclusively(const std::string& path,
                                   absl::string_view contents);

absl::StatusOr<std::string> ReadFile(const std::string& path);

// Creates `dir` and any missing parents (like mkdir -p).
absl::Status CreateDirs(const std::string& dir);

// Makes sure `dir` is a directory this process can create, write and fsync
// files in, creating it (and parents) if missing. The error says why not:
// it is a file, a parent is a file, permission denied, read-only, full.
absl::Status CheckWritableDir(const std::string& dir);

// An exclusive lock on a daemon's data directory, held for as long as the
// object lives (flock on "<dir>/<name>", which also holds the holder's
// pid for the message below; the kernel releases it if the process dies,
// so a crash leaves nothing to clean up).
class DirectoryLock {
 public:
  // FAILED_PRECONDITION naming the holder's pid if another process holds
  // the lock (or another DirectoryLock of this process does), and asking
  // whether another `program` runs on `dir`; other errors as ErrnoStatus.
  static absl::StatusOr<DirectoryLock> Acquire(const std::string& dir,
                                               absl::string_view name,
                                               absl::string_view program);
  DirectoryLock(DirectoryLock&& other) noexcept : fd_(other.fd_) {
    other.fd_ = -1;
  }
  DirectoryLock& operator=(DirectoryLock&& other) noexcept;
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;
  ~DirectoryLock();

 private:
  explicit DirectoryLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// Removes `path` recursively if it exists. OK if it does not exist.
absl::Status RemoveAll(const std::string& path);

bool Exists(const std::string& path);

// Bytes available to unprivileged users on the filesystem holding `path`.
absl::StatusOr<uint64_t> FreeBytes(const std::string& path);

// Returns the parent directory of `path` ("." if none).
std::string Dirname(const std::string& path);

// Incremental SHA-256. Not thread-safe.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(const void* data, size_t n);
  // Returns the lower-case hex digest. Call once.
  std::string HexDigest();

 private:
  void* ctx_;  // EVP_MD_CTX*, kept opaque so OpenSSL stays out of headers.
};

// Returns the hex SHA-256 of a file's contents.
absl::StatusOr<std::string> Sha256File(const std::string& path);

// Copies `src` to `dst` (which must not exist), computing the SHA-256 of
// the bytes as they are written, then fsyncs `dst`. On failure `dst` is
// removed.
struct CopyResult {
  uint64_t size_bytes = 0;
  std::string sha256;
};
// Every chunk written is first granted by each of `limiters` (may be
// empty; null entries are skipped).
absl::StatusOr<CopyResult> CopyFileSynced(
    const std::string& src, const std::string& dst,
    const std::vector<RateLimiter*>& limiters = {});

// Streams bytes [offset, offset + length) of `path` to `sink` in chunks of
// at most `chunk` bytes (length may run past the end: reading stops
// there). An error from the sink stops the read and is returned.
// OUT_OF_RANGE if offset > size.
absl::Status ReadFileChunks(
    const std::string& path, uint64_t offset, uint64_t length,
    const std::function<absl::Status(absl::string_view)>& sink,
    size_t chunk = 1 << 20);

// Creates `path` (O_EXCL), lets `fill` write into it through `append`,
// fsyncs and closes it. On failure the file is removed.
absl::Status WriteFileSynced(
    const std::string& path,
    const std::function<absl::Status(
        const std::function<absl::Status(absl::string_view)>& append)>& fill);

}  // namespace shutter::fs

#endif  // SHUTTER_COMMON_FS_H_
