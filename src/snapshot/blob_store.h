#ifndef SHUTTER_SNAPSHOT_BLOB_STORE_H_
#define SHUTTER_SNAPSHOT_BLOB_STORE_H_

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace shutter {
class RateLimiter;
}

namespace shutter::snapshot {

// One stored object.
struct BlobInfo {
  std::string key;
  uint64_t size = 0;
  // Last modification (creation, for objects that are never rewritten).
  absl::Time modified;
};

// A multipart upload that was started and never completed or aborted.
struct IncompleteUpload {
  std::string key;  // relative to the store's root
  std::string upload_id;
  absl::Time initiated;
};

// A flat namespace of immutable-by-convention objects addressed by keys
// ("a/b/c", '/'-separated, no "." or ".." segments, no leading '/'): the
// storage layer under the snapshot repository. Two implementations: a local
// directory (FsBlobStore) and S3-compatible object storage (S3BlobStore).
// Everything above (manifests, content addressing, commit points, GC) is
// written once against this interface (BlobRepository).
//
// Contract shared by every implementation:
// - A Put is atomic: readers see the whole object or nothing, never a
//   prefix; on failure nothing is visible. With `if_absent` the put
//   succeeds only if no object has the key (ALREADY_EXISTS otherwise),
//   atomically with respect to concurrent puts: exactly one of several
//   racing if_absent puts of a key wins. This is what commit points use.
// - An OK Put is durable (fsynced / acknowledged by the store).
// - Listing and reads are strongly consistent with completed puts and
//   deletes (S3 has been since 2020; a directory is).
// - NOT_FOUND for a missing key; RESOURCE_EXHAUSTED for a full store;
//   UNAVAILABLE / DEADLINE_EXCEEDED for transient failures that survived
//   the implementation's own retries.
//
// Thread-safe.
class BlobStore {
 public:
  static constexpr uint64_t kToEnd = std::numeric_limits<uint64_t>::max();

  struct PutOptions {
    bool if_absent = false;
    // Lower-case hex SHA-256 of the contents if the caller knows it (it is
    // then used to sign the upload and checked by the store where it can).
    std::string sha256;
    // Every chunk uploaded is first granted by each non-null limiter.
    std::vector<RateLimiter*> limiters;
  };

  struct PutResult {
    uint64_t size = 0;
    // SHA-256 of the bytes actually sent (computed while streaming).
    std::string sha256;
  };

  virtual ~BlobStore() = default;

  // Uploads the whole file at `local_path` as `key`.
  virtual absl::StatusOr<PutResult> PutFile(const std::string& key,
                                            const std::string& local_path,
                                            const PutOptions& options) = 0;

  // Uploads `data` as `key`.
  virtual absl::Status Put(const std::string& key, absl::string_view data,
                           const PutOptions& options) = 0;

  // Streams bytes [offset, offset + length) of `key` to `sink` in order, in
  // chunks; an error from the sink stops the read and is returned.
  // OUT_OF_RANGE if offset is past the end.
  virtual absl::Status Read(
      const std::string& key, uint64_t offset, uint64_t length,
      const std::function<absl::Status(absl::string_view)>& sink) const = 0;

  // Size and modification time. NOT_FOUND if absent.
  virtual absl::StatusOr<BlobInfo> Head(const std::string& key) const = 0;

  // Every object whose key starts with `prefix`, in key order.
  virtual absl::StatusOr<std::vector<BlobInfo>> List(
      const std::string& prefix) const = 0;

  // Removes `key`. OK if it is absent.
  virtual absl::Status Delete(const std::string& key) = 0;

  // Moves object `from` to `to` without sending its bytes through this
  // process where the store can: a rename in a directory, a server-side
  // copy and a delete on S3. With `if_absent`, ALREADY_EXISTS if `to`
  // exists (its object is left as it is). Afterwards `from` is gone unless
  // another error is returned. The default copies through this process.
  virtual absl::Status Move(const std::string& from, const std::string& to,
                            bool if_absent);

  // Files up to this size are best read into memory and Put whole (a store
  // that sends a small file in one request anyway: S3 below a part); larger
  // ones are better uploaded with PutFile and Moved. 0: always PutFile.
  virtual uint64_t WholeFilePutLimit() const { return 0; }

  // Where it is, for messages ("/var/lib/shutter/repo", "s3://b/p").
  virtual std::string Describe() const = 0;

  // Multipart uploads under `prefix` that were started and neither
  // completed nor aborted (their writer died). Empty for stores without
  // multipart uploads.
  virtual absl::StatusOr<std::vector<IncompleteUpload>> ListIncompleteUploads(
      const std::string& prefix) const {
    return std::vector<IncompleteUpload>{};
  }
  // Aborts one (its parts are freed). OK if it is gone already.
  virtual absl::Status AbortIncompleteUpload(const IncompleteUpload& upload) {
    return absl::OkStatus();
  }

  // The local path holding `key` if this store is a directory, else "".
  // For tests and tools that inspect objects with local programs.
  virtual std::string LocalPath(const std::string& key) const {
    (void)key;
    return "";
  }

  // Conveniences over Read.
  absl::StatusOr<std::string> Get(const std::string& key, uint64_t offset = 0,
                                  uint64_t length = kToEnd) const;
  // Writes the object to `local_path` (which must not exist), fsyncs it,
  // and returns its size and SHA-256. On failure the file is removed.
  // Every chunk is first granted by each non-null limiter.
  absl::StatusOr<PutResult> GetToFile(
      const std::string& key, const std::string& local_path,
      const std::vector<RateLimiter*>& limiters = {}) const;
};

// INVALID_ARGUMENT unless `key` is a valid blob key (see BlobStore).
absl::Status CheckBlobKey(absl::string_view key);

}  // namespace shutter::snapshot

#endif  // SHUTTER_SNAPSHOT_BLOB_STORE_H_
