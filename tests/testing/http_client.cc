#include "testing/http_client.h"

#include <curl/curl.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace shutter::testing {

std::string HttpResponse::Header(const std::string& name) const {
  for (const std::string& h : headers) {
    const size_t colon = h.find(':');
    if (colon == std::string::npos) continue;
    if (absl::EqualsIgnoreCase(h.substr(0, colon), name)) {
      return std::string(absl::StripAsciiWhitespace(h.substr(colon + 1)));
    }
  }
  return "";
}

absl::StatusOr<HttpResponse> Http(const HttpRequest& request) {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return absl::InternalError("curl_easy_init");
  HttpResponse out;
  auto on_body = +[](char* p, size_t size, size_t n, void* ud) -> size_t {
    static_cast<HttpResponse*>(ud)->body.append(p, size * n);
    return size * n;
  };
  auto on_header = +[](char* p, size_t size, size_t n, void* ud) -> size_t {
    std::string line(p, size * n);
    line = std::string(absl::StripTrailingAsciiWhitespace(line));
    auto* r = static_cast<HttpResponse*>(ud);
    if (absl::StartsWith(line, "HTTP/")) {
      r->headers.clear();
    } else if (!line.empty()) {
      r->headers.push_back(line);
    }
    return size * n;
  };
  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  if (request.method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE,
                     static_cast<long>(request.body.size()));
  }
  curl_slist* headers = nullptr;
  for (const std::string& h : request.headers) {
    headers = curl_slist_append(headers, h.c_str());
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &out);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &out);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  if (!request.ca.empty())
    curl_easy_setopt(curl, CURLOPT_CAINFO, request.ca.c_str());
  if (!request.cert.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSLCERT, request.cert.c_str());
    curl_easy_setopt(curl, CURLOPT_SSLKEY, request.key.c_str());
  }
  const CURLcode rc = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat(request.method, " ", request.url,
                                               ": ", curl_easy_strerror(rc)));
  }
  return out;
}

}  // namespace shutter::testing
