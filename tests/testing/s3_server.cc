#include "testing/s3_server.h"

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "snapshot/s3_blob_store.h"

namespace shutter::testing {
namespace {

std::string FindOnPath(const std::string& name) {
  const char* path = getenv("PATH");
  if (path == nullptr) return "";
  for (absl::string_view dir : absl::StrSplit(path, ':')) {
    std::string p = absl::StrCat(dir, "/", name);
    if (!dir.empty() && ::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

}  // namespace

absl::StatusOr<std::unique_ptr<S3TestServer>> S3TestServer::Start(
    const std::string& dir) {
  auto server = std::make_unique<S3TestServer>();
  RETURN_IF_ERROR(fs::CreateDirs(dir));
  server->credentials_file_ = dir + "/s3-credentials";
  RETURN_IF_ERROR(
      fs::WriteFileAtomically(server->credentials_file_,
                              "[default]\naws_access_key_id = shutter-test\n"
                              "aws_secret_access_key = shutter-test-secret\n"));
  const char* shared = getenv("SHUTTER_TEST_S3_ENDPOINT");
  if (shared != nullptr && *shared != '\0') {
    server->endpoint_ = shared;
    return server;
  }
  std::string moto = FindOnPath("moto_server");
  if (moto.empty()) {
    return absl::NotFoundError(
        "moto_server is not on PATH and SHUTTER_TEST_S3_ENDPOINT is unset");
  }
  const std::string log = dir + "/moto.log";
  server->process_ = std::make_unique<Subprocess>();
  RETURN_IF_ERROR(
      server->process_->Start({moto, "-H", "127.0.0.1", "-p", "0"}, log));
  int port = 0;
  const bool up = PollUntil(
      [&] {
        auto text = fs::ReadFile(log);
        if (!text.ok()) return false;
        const std::string marker = "Running on http://127.0.0.1:";
        size_t at = text->find(marker);
        if (at == std::string::npos) return false;
        size_t end = at + marker.size();
        while (end < text->size() && isdigit((*text)[end])) ++end;
        return absl::SimpleAtoi(
                   text->substr(at + marker.size(), end - at - marker.size()),
                   &port) &&
               port > 0;
      },
      absl::Seconds(60));
  if (!up) {
    auto text = fs::ReadFile(log);
    return absl::NotFoundError(
        absl::StrCat("moto_server did not come up within 60 s: ",
                     text.ok() ? *text : text.status().ToString()));
  }
  server->endpoint_ = absl::StrCat("http://127.0.0.1:", port);
  return server;
}

snapshot::RepositoryOptions S3TestServer::Options() const {
  snapshot::RepositoryOptions o;
  o.s3_endpoint = endpoint_;
  o.s3_credentials_file = credentials_file_;
  return o;
}

std::vector<std::string> S3TestServer::DaemonFlags() const {
  return {"--s3-endpoint", endpoint_, "--s3-credentials-file",
          credentials_file_};
}

absl::StatusOr<std::string> S3TestServer::NewRepositoryUri(
    const std::string& prefix) {
  std::mt19937_64 rng{std::random_device{}()};
  const std::string bucket = absl::StrFormat("shutter-test-%016x", rng());
  const std::string uri = absl::StrCat("s3://", bucket, "/", prefix);
  ASSIGN_OR_RETURN(snapshot::S3Config config,
                   snapshot::S3ConfigFromUri(uri, Options()));
  RETURN_IF_ERROR(snapshot::S3BlobStore::OpenUnchecked(config)->CreateBucket());
  return uri;
}

}  // namespace shutter::testing
