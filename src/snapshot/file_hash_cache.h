#ifndef SHUTTER_SNAPSHOT_FILE_HASH_CACHE_H_
#define SHUTTER_SNAPSHOT_FILE_HASH_CACHE_H_

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace shutter::snapshot {

// Remembers the SHA-256 of immutable files (RocksDB SST and blob files) so
// that an incremental publish neither re-reads nor re-uploads what it
// published before. A file is identified by what cannot change while it
// exists and is unique on a host: device, inode, size, modification time
// and name. A checkpoint's SST files are hard links to the live
// database's, so every checkpoint of an unchanged SST hits the same entry
// (RocksDB never rewrites an SST and never reuses a file number within a
// database, the property BackupEngine's session-id naming relies on).
//
// The cache only ever says what a file's bytes hash to; whether the
// repository still holds that object is always checked (a HEAD), since GC
// may have removed it. A stale or corrupt cache therefore costs a re-read,
// never a wrong snapshot: the entry's identity no longer matches.
//
// Persisted as an append-only text file (one "identity sha256" line per
// entry; a torn last line is ignored), rewritten empty when it outgrows
// `max_entries`. Thread-safe.
class FileHashCache {
 public:
  // `path` empty: in memory only. The file is created if missing.
  static absl::StatusOr<std::unique_ptr<FileHashCache>> Open(
      const std::string& path, size_t max_entries = 1 << 20);
  ~FileHashCache();

  // The SHA-256 recorded for the file at `path` as it is now, if any.
  std::optional<std::string> Lookup(const std::string& path)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Records `sha256` for the file at `path` as it is now (no-op if the file
  // cannot be stat'ed).
  void Insert(const std::string& path, const std::string& sha256)
      ABSL_LOCKS_EXCLUDED(mu_);

  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  FileHashCache(std::string path, size_t max_entries)
      : path_(std::move(path)), max_entries_(max_entries) {}
  static std::optional<std::string> Identity(const std::string& path);

  const std::string path_;
  const size_t max_entries_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::string> entries_ ABSL_GUARDED_BY(mu_);
  int fd_ ABSL_GUARDED_BY(mu_) = -1;
};

}  // namespace shutter::snapshot

#endif  // SHUTTER_SNAPSHOT_FILE_HASH_CACHE_H_
