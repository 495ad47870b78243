#ifndef SHUTTER_SNAPSHOT_SIGV4_H_
#define SHUTTER_SNAPSHOT_SIGV4_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

// AWS Signature Version 4 for S3 requests (the header form), as specified
// in "Authenticating Requests (AWS Signature Version 4)". Pure functions;
// tested against the published AWS examples and test-suite vectors.
namespace shutter::snapshot::sigv4 {

struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // empty unless temporary credentials
};

struct Request {
  std::string method;  // "GET", "PUT", ...
  // The path as sent, already URI-encoded (UriEncode(key, false)).
  std::string path;
  // Query parameters, raw (not encoded); sorted and encoded when signed.
  std::vector<std::pair<std::string, std::string>> query;
  // Headers to sign, names in any case; values are trimmed when signed.
  // Must include "host" and "x-amz-date".
  std::map<std::string, std::string> headers;
  // Lower-case hex SHA-256 of the body, or "UNSIGNED-PAYLOAD".
  std::string payload_sha256;
};

// RFC 3986 encoding as SigV4 wants it: unreserved characters
// (A-Z a-z 0-9 - _ . ~) kept, '/' kept unless `encode_slash`, the rest
// %XX with upper-case hex.
std::string UriEncode(absl::string_view s, bool encode_slash);

// "a=1&b=2", names and values encoded, sorted by name then value.
std::string CanonicalQueryString(
    const std::vector<std::pair<std::string, std::string>>& query);

std::string CanonicalRequest(const Request& r);
std::string StringToSign(const std::string& amz_date, const std::string& scope,
                         const std::string& canonical_request);
// "<yyyymmdd>/<region>/<service>/aws4_request".
std::string Scope(const std::string& amz_date, const std::string& region,
                  const std::string& service);
// Hex signature of `string_to_sign`.
std::string Signature(const std::string& secret_access_key,
                      const std::string& amz_date, const std::string& region,
                      const std::string& service,
                      const std::string& string_to_sign);

// The Authorization header value for `r` ("AWS4-HMAC-SHA256 Credential=...,
// SignedHeaders=..., Signature=...").
std::string Authorization(const Request& r, const Credentials& c,
                          const std::string& region,
                          const std::string& service);

// Lower-case hex SHA-256 of `data`.
std::string HexSha256(absl::string_view data);

}  // namespace shutter::snapshot::sigv4

#endif  // SHUTTER_SNAPSHOT_SIGV4_H_
