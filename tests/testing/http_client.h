#ifndef SHUTTER_TESTS_TESTING_HTTP_CLIENT_H_
#define SHUTTER_TESTS_TESTING_HTTP_CLIENT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace shutter::testing {

struct HttpResponse {
  long status = 0;
  std::string body;
  // Header lines as received ("Name: value"), without the status line.
  std::vector<std::string> headers;
  // The value of the first header called `name` (case-insensitive), or "".
  std::string Header(const std::string& name) const;
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::string body;
  std::vector<std::string> headers;  // "Name: value"
  // For https: the CA bundle to verify the server against, and a client
  // certificate and key to present (PEM files; empty: none).
  std::string ca;
  std::string cert;
  std::string key;
};

// One HTTP request with libcurl (no redirects followed). An error only if
// no answer came (connection refused, TLS failure, timeout).
absl::StatusOr<HttpResponse> Http(const HttpRequest& request);

}  // namespace shutter::testing

#endif  // SHUTTER_TESTS_TESTING_HTTP_CLIENT_H_
