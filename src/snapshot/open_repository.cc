#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "snapshot/blob_repository.h"
#include "snapshot/fs_blob_store.h"
#include "snapshot/s3_blob_store.h"

namespace shutter::snapshot {

void ApplyS3Flags(const S3Flags& flags, RepositoryOptions* options) {
  options->s3_endpoint = flags.endpoint;
  options->s3_region = flags.region;
  options->s3_credentials_file = flags.credentials_file;
  options->s3_path_style = flags.path_style();
}

absl::StatusOr<std::unique_ptr<Repository>> OpenRepository(
    const std::string& uri, const RepositoryOptions& options) {
  std::unique_ptr<BlobStore> store;
  if (absl::StartsWith(uri, "s3://")) {
    ASSIGN_OR_RETURN(S3Config config, S3ConfigFromUri(uri, options));
    ASSIGN_OR_RETURN(store, S3BlobStore::Open(config));
  } else {
    std::string path = uri;
    if (absl::StartsWith(uri, "file://")) {
      path = uri.substr(7);
      if (path.empty() || path[0] != '/') {
        return absl::InvalidArgumentError(absl::StrCat(
            "repository URI ", Quote(uri), " must be file:///absolute/path"));
      }
    } else if (uri.find("://") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "repository URI ", Quote(uri),
          ": unsupported scheme (a path, file:///path or s3://bucket/prefix)"));
    }
    ASSIGN_OR_RETURN(store, FsBlobStore::Open(path, options.create_if_missing));
  }
  return OpenRepositoryOn(std::move(store), options);
}

}  // namespace shutter::snapshot
