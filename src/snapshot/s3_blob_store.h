#ifndef SHUTTER_SNAPSHOT_S3_BLOB_STORE_H_
#define SHUTTER_SNAPSHOT_S3_BLOB_STORE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "snapshot/blob_store.h"
#include "snapshot/repository.h"
#include "snapshot/sigv4.h"

namespace shutter::snapshot {

struct S3Config {
  std::string bucket;
  // Key prefix inside the bucket, without leading or trailing '/'; may be
  // empty. Blob key "k" is stored as "<prefix>/k".
  std::string prefix;
  // "http://127.0.0.1:9000" or "https://s3.eu-west-1.amazonaws.com".
  std::string endpoint;
  std::string region = "us-east-1";
  // Path-style (endpoint/bucket/key) or virtual-hosted (bucket.host/key).
  bool path_style = true;
  sigv4::Credentials credentials;
  // Files larger than this are uploaded in parts of this size, up to
  // `parallel_parts` at once (memory: parallel_parts x part_size per
  // upload). S3 wants parts of at least 5 MiB (but the last).
  uint64_t part_size = 8 << 20;
  int parallel_parts = 4;
  // Attempts per request (the first included) on 5xx, throttling (429,
  // SlowDown) and connection errors, with exponential backoff and full
  // jitter between base_backoff and max_backoff.
  int max_attempts = 6;
  // Keys per ListObjectsV2 page (S3 answers at most 1000).
  int list_page_size = 1000;
  absl::Duration base_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  absl::Duration connect_timeout = absl::Seconds(5);
  // A transfer slower than 1 byte/s for this long is aborted (and retried).
  absl::Duration stall_timeout = absl::Seconds(60);
};

// Parses "s3://bucket[/prefix]" and fills the rest from `options` and the
// standard AWS environment: endpoint (options.s3_endpoint,
// AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS's regional endpoint),
// region (options.s3_region, AWS_REGION, AWS_DEFAULT_REGION, us-east-1),
// credentials (options.s3_credentials_file, else AWS_ACCESS_KEY_ID /
// AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, else the [AWS_PROFILE or
// default] section of AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials).
// INVALID_ARGUMENT for a malformed URI; FAILED_PRECONDITION when no
// credentials can be found.
absl::StatusOr<S3Config> S3ConfigFromUri(const std::string& uri,
                                         const RepositoryOptions& options);

// A blob store in an S3-compatible object store, over libcurl with
// requests signed by sigv4.h. Puts of files above part_size are multipart
// uploads with parallel parts; a whole-object SHA-256 is computed while
// streaming. Only-if-absent puts send "If-None-Match: *" (S3 since 2024,
// MinIO, moto; on CompleteMultipartUpload for large objects). Transient
// failures are retried (see S3Config); a GET retried midway resumes at
// the first byte not yet delivered. Thread-safe; connections are pooled.
class S3BlobStore : public BlobStore {
 public:
  // Checks that the bucket answers (a one-key listing).
  static absl::StatusOr<std::unique_ptr<S3BlobStore>> Open(
      const S3Config& config);
  // Like Open, but without the check (for creating the bucket).
  static std::unique_ptr<S3BlobStore> OpenUnchecked(const S3Config& config);
  ~S3BlobStore() override;

  absl::StatusOr<PutResult> PutFile(const std::string& key,
                                    const std::string& local_path,
                                    const PutOptions& options) override;
  absl::Status Put(const std::string& key, absl::string_view data,
                   const PutOptions& options) override;
  absl::Status Read(const std::string& key, uint64_t offset, uint64_t length,
                    const std::function<absl::Status(absl::string_view)>& sink)
      const override;
  absl::StatusOr<BlobInfo> Head(const std::string& key) const override;
  absl::StatusOr<std::vector<BlobInfo>> List(
      const std::string& prefix) const override;
  absl::Status Delete(const std::string& key) override;
  // CopyObject (server-side: no bytes through this process), then DELETE.
  // if_absent is checked with a HEAD first, so two movers racing to the
  // same key may both copy: for content-addressed keys, the same bytes.
  absl::Status Move(const std::string& from, const std::string& to,
                    bool if_absent) override;
  // Below a part, PutFile reads the file into memory and sends it whole.
  uint64_t WholeFilePutLimit() const override { return config_.part_size; }
  std::string Describe() const override;
  // ListMultipartUploads under the store's prefix + `prefix` (every page).
  absl::StatusOr<std::vector<IncompleteUpload>> ListIncompleteUploads(
      const std::string& prefix) const override;
  // AbortMultipartUpload.
  absl::Status AbortIncompleteUpload(const IncompleteUpload& upload) override;

  // Creates the bucket (OK if this account already owns it). For tests and
  // first-time setup.
  absl::Status CreateBucket();

  struct Counters {
    uint64_t requests = 0;
    uint64_t retries = 0;
    uint64_t bytes_sent = 0;
  };
  Counters counters() const ABSL_LOCKS_EXCLUDED(mu_);

  // One HTTP exchange; public for the implementation's helpers only.
  struct Call;

 private:
  explicit S3BlobStore(const S3Config& config) : config_(config) {}
  absl::Status Execute(Call& call) const;
  absl::Status ExecuteOnce(Call& call, void* curl) const;
  std::string ObjectPath(const std::string& key) const;
  absl::StatusOr<PutResult> PutMultipart(const std::string& key,
                                         const std::string& local_path,
                                         uint64_t size,
                                         const PutOptions& options);
  void* TakeHandle() const ABSL_LOCKS_EXCLUDED(mu_);
  void ReturnHandle(void* h) const ABSL_LOCKS_EXCLUDED(mu_);

  const S3Config config_;
  mutable absl::Mutex mu_;
  mutable std::vector<void*> idle_ ABSL_GUARDED_BY(mu_);  // CURL*
  mutable Counters counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shutter::snapshot

#endif  // SHUTTER_SNAPSHOT_S3_BLOB_STORE_H_
