#ifndef SHUTTER_TESTS_TESTING_S3_SERVER_H_
#define SHUTTER_TESTS_TESTING_S3_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "snapshot/repository.h"
#include "testing/process.h"

namespace shutter::testing {

// A real S3-protocol server on loopback for tests: the one named by
// $SHUTTER_TEST_S3_ENDPOINT (scripts/test.sh starts one moto_server for the
// whole run), else a moto_server started here on an ephemeral port and
// killed with this object. Each test gets its own bucket.
class S3TestServer {
 public:
  // NOT_FOUND (with the reason) if no server can be had.
  static absl::StatusOr<std::unique_ptr<S3TestServer>> Start(
      const std::string& dir);

  const std::string& endpoint() const { return endpoint_; }
  // A credentials file the server accepts (moto accepts any).
  const std::string& credentials_file() const { return credentials_file_; }
  // Creates a bucket with a fresh name; returns "s3://<bucket>/<prefix>".
  absl::StatusOr<std::string> NewRepositoryUri(
      const std::string& prefix = "repo");
  // Options that reach this server.
  snapshot::RepositoryOptions Options() const;
  // Daemon flags that reach this server.
  std::vector<std::string> DaemonFlags() const;

 private:
  std::string endpoint_;
  std::string credentials_file_;
  std::unique_ptr<Subprocess> process_;
};

// Skips the test (or fails it, when $SHUTTER_REQUIRE_S3 is set, as in CI)
// if `server` could not be started.
#define SHUTTER_S3_OR_SKIP(server)                                     \
  do {                                                                 \
    if (!(server).ok()) {                                              \
      if (getenv("SHUTTER_REQUIRE_S3") != nullptr) {                   \
        FAIL() << "S3 server required: " << (server).status();         \
      }                                                                \
      GTEST_SKIP() << "no S3 server: " << (server).status().message(); \
    }                                                                  \
  } while (0)

}  // namespace shutter::testing

#endif  // SHUTTER_TESTS_TESTING_S3_SERVER_H_
