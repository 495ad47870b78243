#include "snapshot/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace shutter::snapshot::sigv4 {
namespace {

std::string Hex(const unsigned char* p, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[p[i] >> 4]);
    out.push_back(kDigits[p[i] & 15]);
  }
  return out;
}

std::string Hmac(absl::string_view key, absl::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), md,
       &len);
  return std::string(reinterpret_cast<char*>(md), len);
}

// Trims and collapses runs of spaces, as canonical header values require.
std::string CanonicalHeaderValue(absl::string_view v) {
  v = absl::StripAsciiWhitespace(v);
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ') {
      space = true;
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

}  // namespace

std::string HexSha256(absl::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return Hex(md, len);
}

std::string UriEncode(absl::string_view s, bool encode_slash) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' ||
        c == '~' || (c == '/' && !encode_slash)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string CanonicalQueryString(
    const std::vector<std::pair<std::string, std::string>>& query) {
  std::vector<std::pair<std::string, std::string>> enc;
  enc.reserve(query.size());
  for (const auto& [k, v] : query) {
    enc.emplace_back(UriEncode(k, true), UriEncode(v, true));
  }
  std::sort(enc.begin(), enc.end());
  std::vector<std::string> parts;
  parts.reserve(enc.size());
  for (const auto& [k, v] : enc) parts.push_back(absl::StrCat(k, "=", v));
  return absl::StrJoin(parts, "&");
}

namespace {
std::string SignedHeaders(const Request& r) {
  std::vector<std::string> names;
  for (const auto& [k, v] : r.headers)
    names.push_back(absl::AsciiStrToLower(k));
  std::sort(names.begin(), names.end());
  return absl::StrJoin(names, ";");
}
}  // namespace

std::string CanonicalRequest(const Request& r) {
  std::map<std::string, std::string> lower;
  for (const auto& [k, v] : r.headers) {
    lower[absl::AsciiStrToLower(k)] = CanonicalHeaderValue(v);
  }
  std::string headers;
  for (const auto& [k, v] : lower) absl::StrAppend(&headers, k, ":", v, "\n");
  return absl::StrCat(r.method, "\n", r.path.empty() ? "/" : r.path, "\n",
                      CanonicalQueryString(r.query), "\n", headers, "\n",
                      SignedHeaders(r), "\n", r.payload_sha256);
}

std::string Scope(const std::string& amz_date, const std::string& region,
                  const std::string& service) {
  return absl::StrCat(amz_date.substr(0, 8), "/", region, "/", service,
                      "/aws4_request");
}

std::string StringToSign(const std::string& amz_date, const std::string& scope,
                         const std::string& canonical_request) {
  return absl::StrCat("AWS4-HMAC-SHA256\n", amz_date, "\n", scope, "\n",
                      HexSha256(canonical_request));
}

std::string Signature(const std::string& secret_access_key,
                      const std::string& amz_date, const std::string& region,
                      const std::string& service,
                      const std::string& string_to_sign) {
  std::string k =
      Hmac(absl::StrCat("AWS4", secret_access_key), amz_date.substr(0, 8));
  k = Hmac(k, region);
  k = Hmac(k, service);
  k = Hmac(k, "aws4_request");
  const std::string sig = Hmac(k, string_to_sign);
  return Hex(reinterpret_cast<const unsigned char*>(sig.data()), sig.size());
}

std::string Authorization(const Request& r, const Credentials& c,
                          const std::string& region,
                          const std::string& service) {
  std::string amz_date;
  for (const auto& [k, v] : r.headers) {
    if (absl::AsciiStrToLower(k) == "x-amz-date") amz_date = v;
  }
  const std::string scope = Scope(amz_date, region, service);
  const std::string sts = StringToSign(amz_date, scope, CanonicalRequest(r));
  return absl::StrCat(
      "AWS4-HMAC-SHA256 Credential=", c.access_key_id, "/", scope,
      ", SignedHeaders=", SignedHeaders(r), ", Signature=",
      Signature(c.secret_access_key, amz_date, region, service, sts));
}

}  // namespace shutter::snapshot::sigv4
