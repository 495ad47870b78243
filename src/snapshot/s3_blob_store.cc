#include "snapshot/s3_blob_store.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/fs.h"
#include "common/rate_limiter.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "snapshot/s3_xml.h"
#include "spdlog/spdlog.h"

namespace shutter::snapshot {
namespace {

constexpr char kEmptySha256[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

// [profile] key = value, as in ~/.aws/credentials.
absl::StatusOr<sigv4::Credentials> ReadCredentialsFile(
    const std::string& path, const std::string& profile) {
  ASSIGN_OR_RETURN(std::string text, fs::ReadFile(path));
  sigv4::Credentials c;
  std::string section;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      section = std::string(
          absl::StripAsciiWhitespace(line.substr(1, line.size() - 2)));
      continue;
    }
    if (section != profile) continue;
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits('=', 1));
    absl::string_view k = absl::StripAsciiWhitespace(kv.first);
    std::string v(absl::StripAsciiWhitespace(kv.second));
    if (k == "aws_access_key_id") c.access_key_id = v;
    if (k == "aws_secret_access_key") c.secret_access_key = v;
    if (k == "aws_session_token") c.session_token = v;
  }
  if (c.access_key_id.empty() || c.secret_access_key.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("S3 credentials file ", path,
                     " has no aws_access_key_id and "
                     "aws_secret_access_key in section [",
                     profile, "]"));
  }
  return c;
}

std::string AmzDate(absl::Time t) {
  return absl::FormatTime("%Y%m%dT%H%M%SZ", t, absl::UTCTimeZone());
}

bool IsRetryableHttp(long status) {
  return status == 429 || status == 500 || status == 502 || status == 503 ||
         status == 504 ||
         status == 409;  // ConditionalRequestConflict: a racing write
}

std::once_flag curl_init_once;

}  // namespace

// One request: what to send, where the answer goes, what came back.
struct S3BlobStore::Call {
  std::string method;
  std::string key;  // blob key ("" for bucket-level requests)
  bool bucket_level = false;
  std::vector<std::pair<std::string, std::string>> query;
  std::map<std::string, std::string> headers;
  absl::string_view body;  // request body
  std::string body_sha256 = kEmptySha256;
  std::vector<RateLimiter*> limiters;
  // Response body goes to `sink` on 2xx if set, else into `response`.
  std::function<absl::Status(absl::string_view)> sink;
  // For GETs with a sink: the range to read; a retry resumes after what
  // was delivered.
  bool ranged = false;
  uint64_t range_start = 0;
  uint64_t range_end = 0;  // inclusive; UINT64_MAX: to the end

  // Results.
  long status = 0;
  std::string response;
  std::map<std::string, std::string> response_headers;  // lower-case names
  absl::Status sink_status;
  size_t body_pos = 0;
  uint64_t delivered = 0;
};

namespace {

size_t OnWrite(char* p, size_t size, size_t n, void* userdata) {
  auto* call = static_cast<S3BlobStore::Call*>(userdata);
  const size_t len = size * n;
  if (call->sink && call->status / 100 == 2) {
    call->sink_status = call->sink(absl::string_view(p, len));
    if (!call->sink_status.ok()) return 0;  // aborts the transfer
    call->delivered += len;
  } else if (call->response.size() < (64u << 20)) {
    call->response.append(p, len);
  }
  return len;
}

size_t OnHeader(char* p, size_t size, size_t n, void* userdata) {
  auto* call = static_cast<S3BlobStore::Call*>(userdata);
  absl::string_view line(p, size * n);
  if (absl::StartsWith(line, "HTTP/")) {
    // A new response (e.g. after 100 Continue): reset.
    call->response_headers.clear();
    std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
    if (parts.size() >= 2) {
      int code = 0;
      if (absl::SimpleAtoi(parts[1], &code)) call->status = code;
    }
    return size * n;
  }
  const size_t colon = line.find(':');
  if (colon != absl::string_view::npos) {
    call->response_headers[absl::AsciiStrToLower(line.substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  }
  return size * n;
}

size_t OnRead(char* buffer, size_t size, size_t n, void* userdata) {
  auto* call = static_cast<S3BlobStore::Call*>(userdata);
  const size_t left = call->body.size() - call->body_pos;
  const size_t len = std::min(left, size * n);
  if (len > 0) {
    for (RateLimiter* l : call->limiters) {
      if (l != nullptr) l->Request(len);
    }
  }
  memcpy(buffer, call->body.data() + call->body_pos, len);
  call->body_pos += len;
  return len;
}

}  // namespace

absl::StatusOr<S3Config> S3ConfigFromUri(const std::string& uri,
                                         const RepositoryOptions& options) {
  S3Config c;
  absl::string_view rest = uri;
  if (!absl::ConsumePrefix(&rest, "s3://")) {
    return absl::InvalidArgumentError(
        absl::StrCat(Quote(uri), " is not an s3:// URI"));
  }
  const size_t slash = rest.find('/');
  c.bucket = std::string(rest.substr(0, slash));
  if (slash != absl::string_view::npos) {
    c.prefix = std::string(
        absl::StripSuffix(absl::StripPrefix(rest.substr(slash), "/"), "/"));
  }
  if (c.bucket.size() < 3 || c.bucket.size() > 63 ||
      c.bucket.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789.-") !=
          std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "repository URI ", Quote(uri),
        ": the bucket name must be 3-63 lower-case letters, digits, '.' "
        "or '-' (s3://bucket/prefix)"));
  }
  if (!c.prefix.empty()) {
    if (absl::Status s = CheckBlobKey(c.prefix); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "repository URI ", Quote(uri), ": bad prefix: ", s.message()));
    }
  }
  c.region = options.s3_region;
  if (c.region.empty()) c.region = Env("AWS_REGION");
  if (c.region.empty()) c.region = Env("AWS_DEFAULT_REGION");
  if (c.region.empty()) c.region = "us-east-1";
  c.endpoint = options.s3_endpoint;
  if (c.endpoint.empty()) c.endpoint = Env("AWS_ENDPOINT_URL_S3");
  if (c.endpoint.empty()) c.endpoint = Env("AWS_ENDPOINT_URL");
  const bool custom_endpoint = !c.endpoint.empty();
  if (c.endpoint.empty()) {
    c.endpoint = absl::StrCat("https://s3.", c.region, ".amazonaws.com");
  }
  while (!c.endpoint.empty() && c.endpoint.back() == '/') c.endpoint.pop_back();
  if (!absl::StartsWith(c.endpoint, "http://") &&
      !absl::StartsWith(c.endpoint, "https://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "S3 endpoint ", Quote(c.endpoint), " must start with http(s)://"));
  }
  c.path_style =
      options.s3_path_style < 0 ? custom_endpoint : options.s3_path_style == 1;
  std::string file = options.s3_credentials_file;
  if (!file.empty() && !fs::Exists(file)) {
    return absl::FailedPreconditionError(
        absl::StrCat("S3 credentials file ", file, " does not exist"));
  }
  if (file.empty() && !Env("AWS_ACCESS_KEY_ID").empty()) {
    c.credentials.access_key_id = Env("AWS_ACCESS_KEY_ID");
    c.credentials.secret_access_key = Env("AWS_SECRET_ACCESS_KEY");
    c.credentials.session_token = Env("AWS_SESSION_TOKEN");
    if (c.credentials.secret_access_key.empty()) {
      return absl::FailedPreconditionError(
          "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
    }
    return c;
  }
  if (file.empty()) file = Env("AWS_SHARED_CREDENTIALS_FILE");
  if (file.empty() && !Env("HOME").empty()) {
    file = Env("HOME") + "/.aws/credentials";
  }
  std::string profile = Env("AWS_PROFILE");
  if (profile.empty()) profile = "default";
  if (file.empty() || !fs::Exists(file)) {
    return absl::FailedPreconditionError(
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
        "or give a credentials file (--s3-credentials-file, "
        "AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials)");
  }
  ASSIGN_OR_RETURN(c.credentials, ReadCredentialsFile(file, profile));
  return c;
}

std::unique_ptr<S3BlobStore> S3BlobStore::OpenUnchecked(
    const S3Config& config) {
  std::call_once(curl_init_once, [] { curl_global_init(CURL_GLOBAL_ALL); });
  return std::unique_ptr<S3BlobStore>(new S3BlobStore(config));
}

absl::StatusOr<std::unique_ptr<S3BlobStore>> S3BlobStore::Open(
    const S3Config& config) {
  std::unique_ptr<S3BlobStore> store = OpenUnchecked(config);
  Call call;
  call.method = "GET";
  call.bucket_level = true;
  call.query = {{"list-type", "2"}, {"max-keys", "1"}};
  absl::Status s = store->Execute(call);
  if (!s.ok()) {
    return absl::Status(
        s.code(), absl::StrCat("cannot use S3 repository ", store->Describe(),
                               ": ", s.message()));
  }
  return store;
}

S3BlobStore::~S3BlobStore() {
  absl::MutexLock l(&mu_);
  for (void* h : idle_) curl_easy_cleanup(static_cast<CURL*>(h));
}

std::string S3BlobStore::Describe() const {
  return absl::StrCat("s3://", config_.bucket,
                      config_.prefix.empty() ? "" : "/", config_.prefix, " at ",
                      config_.endpoint);
}

S3BlobStore::Counters S3BlobStore::counters() const {
  absl::MutexLock l(&mu_);
  return counters_;
}

void* S3BlobStore::TakeHandle() const {
  {
    absl::MutexLock l(&mu_);
    if (!idle_.empty()) {
      void* h = idle_.back();
      idle_.pop_back();
      return h;
    }
  }
  return curl_easy_init();
}

void S3BlobStore::ReturnHandle(void* h) const {
  absl::MutexLock l(&mu_);
  if (idle_.size() < 64) {
    idle_.push_back(h);
  } else {
    curl_easy_cleanup(static_cast<CURL*>(h));
  }
}

std::string S3BlobStore::ObjectPath(const std::string& key) const {
  std::string full =
      config_.prefix.empty()
          ? key
          : (key.empty() ? config_.prefix + "/"
                         : absl::StrCat(config_.prefix, "/", key));
  std::string path = config_.path_style ? "/" + config_.bucket : "";
  if (!full.empty() || !config_.path_style) {
    absl::StrAppend(&path, "/", sigv4::UriEncode(full, false));
  }
  return path;
}

absl::Status S3BlobStore::ExecuteOnce(Call& call, void* handle) const {
  CURL* curl = static_cast<CURL*>(handle);
  curl_easy_reset(curl);
  std::string host(absl::StripPrefix(
      absl::StripPrefix(config_.endpoint, "https://"), "http://"));
  const std::string scheme =
      absl::StartsWith(config_.endpoint, "https://") ? "https://" : "http://";
  if (!config_.path_style) host = absl::StrCat(config_.bucket, ".", host);
  const std::string path =
      call.bucket_level ? (config_.path_style ? "/" + config_.bucket : "/")
                        : ObjectPath(call.key);

  sigv4::Request req;
  req.method = call.method;
  req.path = path;
  req.query = call.query;
  req.headers = call.headers;
  req.headers["host"] = host;
  req.headers["x-amz-date"] = AmzDate(absl::Now());
  req.headers["x-amz-content-sha256"] = call.body_sha256;
  if (!config_.credentials.session_token.empty()) {
    req.headers["x-amz-security-token"] = config_.credentials.session_token;
  }
  if (call.ranged) {
    const uint64_t start = call.range_start + call.delivered;
    req.headers["range"] =
        call.range_end == UINT64_MAX
            ? absl::StrCat("bytes=", start, "-")
            : absl::StrCat("bytes=", start, "-", call.range_end);
  }
  req.payload_sha256 = call.body_sha256;
  const std::string auth =
      sigv4::Authorization(req, config_.credentials, config_.region, "s3");

  std::string url = absl::StrCat(scheme, host, path);
  const std::string qs = sigv4::CanonicalQueryString(call.query);
  if (!qs.empty()) absl::StrAppend(&url, "?", qs);

  curl_slist* headers = nullptr;
  for (const auto& [k, v] : req.headers) {
    if (k == "host") continue;
    headers = curl_slist_append(headers, absl::StrCat(k, ": ", v).c_str());
  }
  headers =
      curl_slist_append(headers, absl::StrCat("Authorization: ", auth).c_str());
  headers = curl_slist_append(headers, "Expect:");

  call.status = 0;
  call.response.clear();
  call.response_headers.clear();
  call.body_pos = 0;
  call.sink_status = absl::OkStatus();
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(
      curl, CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(config_.connect_timeout)));
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(
      curl, CURLOPT_LOW_SPEED_TIME,
      static_cast<long>(absl::ToInt64Seconds(config_.stall_timeout)));
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &OnWrite);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &call);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &call);
  if (call.method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (call.method == "PUT" || call.method == "POST") {
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, &OnRead);
    curl_easy_setopt(curl, CURLOPT_READDATA, &call);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE,
                     static_cast<curl_off_t>(call.body.size()));
    if (call.method == "POST") {
      curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "POST");
    }
  } else if (call.method != "GET") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, call.method.c_str());
  }
  CURLcode rc = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  {
    absl::MutexLock l(&mu_);
    ++counters_.requests;
    counters_.bytes_sent += call.body_pos;
  }
  if (!call.sink_status.ok()) return call.sink_status;
  if (rc != CURLE_OK) {
    return absl::UnavailableError(
        absl::StrCat(call.method, " ", url, ": ", curl_easy_strerror(rc)));
  }
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  call.status = code;
  if (code / 100 == 2) {
    // CompleteMultipartUpload and CopyObject can fail with 200 and an
    // <Error> body.
    if ((call.method == "POST" || call.headers.count("x-amz-copy-source")) &&
        absl::StrContains(call.response, "<Error>")) {
      call.status = 500;
    } else {
      return absl::OkStatus();
    }
  }
  const std::string what = absl::StrCat(
      call.method, " ", Describe(), call.key.empty() ? "" : " key ", call.key);
  const s3xml::Error parsed = s3xml::ParseError(call.response);
  const std::string& err_code = parsed.code;
  const std::string& err_msg = parsed.message;
  const std::string detail =
      absl::StrCat(what, ": HTTP ", call.status, err_code.empty() ? "" : " ",
                   err_code, err_msg.empty() ? "" : ": ", err_msg);
  switch (call.status) {
    case 404:
      return absl::NotFoundError(detail);
    case 412:
      return absl::FailedPreconditionError(detail);
    case 403:
      return absl::PermissionDeniedError(absl::StrCat(
          detail, " (check the credentials, region and bucket policy)"));
    case 400:
      if (err_code == "EntityTooLarge") {
        return absl::ResourceExhaustedError(detail);
      }
      return absl::InvalidArgumentError(detail);
    case 416:
      return absl::OutOfRangeError(detail);
    case 507:
      return absl::ResourceExhaustedError(detail);
    default:
      if (IsRetryableHttp(call.status)) return absl::UnavailableError(detail);
      return absl::UnknownError(detail);
  }
}

absl::Status S3BlobStore::Execute(Call& call) const {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  void* handle = TakeHandle();
  if (handle == nullptr) return absl::InternalError("curl_easy_init failed");
  absl::Status s;
  for (int attempt = 1;; ++attempt) {
    s = ExecuteOnce(call, handle);
    const bool transient = absl::IsUnavailable(s) &&
                           (call.status == 0 || IsRetryableHttp(call.status));
    if (s.ok() || !transient || attempt >= config_.max_attempts) break;
    // A streaming GET resumes after what was delivered; an upload resends.
    const absl::Duration cap = std::min(
        config_.max_backoff, config_.base_backoff * (int64_t{1} << attempt));
    const absl::Duration sleep =
        absl::Nanoseconds(std::uniform_int_distribution<int64_t>(
            0, absl::ToInt64Nanoseconds(cap))(rng));
    spdlog::debug("S3 {} {} failed ({}); retry {} in {}", call.method, call.key,
                  s.ToString(), attempt, absl::FormatDuration(sleep));
    {
      absl::MutexLock l(&mu_);
      ++counters_.retries;
    }
    absl::SleepFor(sleep);
    // Start the handle afresh: the connection may be what failed.
    curl_easy_cleanup(static_cast<CURL*>(handle));
    handle = curl_easy_init();
    if (handle == nullptr) return absl::InternalError("curl_easy_init failed");
  }
  ReturnHandle(handle);
  return s;
}

absl::Status S3BlobStore::Put(const std::string& key, absl::string_view data,
                              const PutOptions& options) {
  RETURN_IF_ERROR(CheckBlobKey(key));
  Call call;
  call.method = "PUT";
  call.key = key;
  call.body = data;
  call.body_sha256 = sigv4::HexSha256(data);
  call.limiters = options.limiters;
  if (!options.sha256.empty() && options.sha256 != call.body_sha256) {
    return absl::InvalidArgumentError(
        absl::StrCat("put of ", key, ": data does not match the given sha256"));
  }
  if (options.if_absent) call.headers["if-none-match"] = "*";
  absl::Status s = Execute(call);
  if (options.if_absent && absl::IsFailedPrecondition(s)) {
    return absl::AlreadyExistsError(
        absl::StrCat("object ", key, " already exists in ", Describe()));
  }
  return s;
}

absl::StatusOr<BlobStore::PutResult> S3BlobStore::PutFile(
    const std::string& key, const std::string& local_path,
    const PutOptions& options) {
  RETURN_IF_ERROR(CheckBlobKey(key));
  struct stat st;
  if (::stat(local_path.c_str(), &st) != 0) {
    return fs::ErrnoStatus("stat", local_path);
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > config_.part_size) {
    return PutMultipart(key, local_path, size, options);
  }
  ASSIGN_OR_RETURN(std::string data, fs::ReadFile(local_path));
  PutResult r{data.size(), sigv4::HexSha256(data)};
  if (!options.sha256.empty() && r.sha256 != options.sha256) {
    return absl::DataLossError(
        absl::StrCat(local_path, " changed while it was uploaded: sha256 ",
                     r.sha256, ", expected ", options.sha256));
  }
  PutOptions o = options;
  o.sha256 = r.sha256;
  RETURN_IF_ERROR(Put(key, data, o));
  return r;
}

absl::StatusOr<BlobStore::PutResult> S3BlobStore::PutMultipart(
    const std::string& key, const std::string& local_path, uint64_t size,
    const PutOptions& options) {
  Call init;
  init.method = "POST";
  init.key = key;
  init.query = {{"uploads", ""}};
  RETURN_IF_ERROR(Execute(init));
  const std::string upload_id(s3xml::Field(init.response, "UploadId"));
  if (upload_id.empty()) {
    return absl::UnknownError(absl::StrCat("CreateMultipartUpload of ", key,
                                           ": no UploadId in the answer"));
  }
  const uint64_t parts = (size + config_.part_size - 1) / config_.part_size;
  std::vector<std::string> etags(parts);
  absl::Mutex mu;
  absl::Status first_error;  // guarded by mu
  int running = 0;           // guarded by mu
  std::vector<std::thread> threads;
  fs::Sha256 whole;
  PutResult result;
  {
    std::ifstream in(local_path, std::ios::binary);
    if (!in) first_error = fs::ErrnoStatus("open", local_path);
    for (uint64_t i = 0; i < parts; ++i) {
      {
        absl::MutexLock l(&mu);
        auto can_start = [&] {
          return running < config_.parallel_parts || !first_error.ok();
        };
        mu.Await(absl::Condition(&can_start));
        if (!first_error.ok()) break;
        ++running;
      }
      const uint64_t len =
          std::min(config_.part_size, size - i * config_.part_size);
      auto buf = std::make_shared<std::string>(len, '\0');
      in.read(buf->data(), static_cast<std::streamsize>(len));
      if (static_cast<uint64_t>(in.gcount()) != len) {
        absl::MutexLock l(&mu);
        first_error = absl::DataLossError(
            absl::StrCat(local_path, " shrank while it was uploaded"));
        --running;
        break;
      }
      whole.Update(buf->data(), buf->size());
      result.size += len;
      threads.emplace_back([&, i, buf] {
        Call part;
        part.method = "PUT";
        part.key = key;
        part.query = {{"partNumber", absl::StrCat(i + 1)},
                      {"uploadId", upload_id}};
        part.body = *buf;
        part.body_sha256 = sigv4::HexSha256(*buf);
        part.limiters = options.limiters;
        absl::Status s = Execute(part);
        absl::MutexLock l(&mu);
        if (s.ok()) {
          etags[i] = part.response_headers["etag"];
          if (etags[i].empty()) {
            s = absl::UnknownError(
                absl::StrCat("UploadPart ", i + 1, " of ", key, ": no ETag"));
          }
        }
        if (!s.ok() && first_error.ok()) first_error = s;
        --running;
      });
    }
  }
  for (auto& t : threads) t.join();
  result.sha256 = whole.HexDigest();
  absl::Status s = first_error;
  if (s.ok() && !options.sha256.empty() && result.sha256 != options.sha256) {
    s = absl::DataLossError(
        absl::StrCat(local_path, " changed while it was uploaded: sha256 ",
                     result.sha256, ", expected ", options.sha256));
  }
  if (s.ok()) {
    std::string xml = "<CompleteMultipartUpload>";
    for (uint64_t i = 0; i < parts; ++i) {
      absl::StrAppend(&xml, "<Part><PartNumber>", i + 1, "</PartNumber><ETag>",
                      etags[i], "</ETag></Part>");
    }
    xml += "</CompleteMultipartUpload>";
    Call done;
    done.method = "POST";
    done.key = key;
    done.query = {{"uploadId", upload_id}};
    done.body = xml;
    done.body_sha256 = sigv4::HexSha256(xml);
    if (options.if_absent) done.headers["if-none-match"] = "*";
    s = Execute(done);
    if (s.ok()) return result;
    if (options.if_absent && absl::IsFailedPrecondition(s)) {
      s = absl::AlreadyExistsError(
          absl::StrCat("object ", key, " already exists in ", Describe()));
    }
  }
  Call abort;
  abort.method = "DELETE";
  abort.key = key;
  abort.query = {{"uploadId", upload_id}};
  absl::Status a = Execute(abort);
  if (!a.ok()) {
    spdlog::warn("cannot abort multipart upload of {}: {}", key, a.ToString());
  }
  return s;
}

absl::Status S3BlobStore::Read(
    const std::string& key, uint64_t offset, uint64_t length,
    const std::function<absl::Status(absl::string_view)>& sink) const {
  RETURN_IF_ERROR(CheckBlobKey(key));
  if (length == 0) return absl::OkStatus();
  Call call;
  call.method = "GET";
  call.key = key;
  call.sink = sink;
  // Always ranged (even for the whole object), so that a retry resumes.
  call.ranged = true;
  call.range_start = offset;
  call.range_end = length == kToEnd ? UINT64_MAX : offset + length - 1;
  absl::Status s = Execute(call);
  // An empty object has no byte 0: S3 answers 416 to "bytes=0-".
  if (absl::IsOutOfRange(s) && offset == 0 && call.delivered == 0) {
    auto head = Head(key);
    if (head.ok() && head->size == 0) return absl::OkStatus();
  }
  return s;
}

absl::StatusOr<BlobInfo> S3BlobStore::Head(const std::string& key) const {
  RETURN_IF_ERROR(CheckBlobKey(key));
  Call call;
  call.method = "HEAD";
  call.key = key;
  absl::Status s = Execute(call);
  if (absl::IsNotFound(s)) {
    return absl::NotFoundError(
        absl::StrCat("object ", key, " is missing from ", Describe()));
  }
  RETURN_IF_ERROR(s);
  BlobInfo info;
  info.key = key;
  if (!absl::SimpleAtoi(call.response_headers["content-length"], &info.size)) {
    return absl::UnknownError(
        absl::StrCat("HEAD ", key, ": no Content-Length in the answer"));
  }
  std::string err;
  if (!absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT",
                       call.response_headers["last-modified"], &info.modified,
                       &err)) {
    info.modified = absl::Now();  // unknown: treat as new (never collected)
  }
  return info;
}

absl::StatusOr<std::vector<BlobInfo>> S3BlobStore::List(
    const std::string& prefix) const {
  std::vector<BlobInfo> out;
  const std::string full_prefix =
      config_.prefix.empty() ? prefix
                             : absl::StrCat(config_.prefix, "/", prefix);
  const size_t strip = config_.prefix.empty() ? 0 : config_.prefix.size() + 1;
  std::string token;
  for (;;) {
    Call call;
    call.method = "GET";
    call.bucket_level = true;
    call.query = {{"list-type", "2"},
                  {"prefix", full_prefix},
                  {"max-keys", absl::StrCat(config_.list_page_size)}};
    if (!token.empty()) call.query.emplace_back("continuation-token", token);
    RETURN_IF_ERROR(Execute(call));
    s3xml::ListPage page =
        s3xml::ParseListObjectsV2(call.response, strip, absl::Now());
    for (BlobInfo& info : page.objects) {
      // Objects whose names are not blob keys are not Shutter's.
      if (CheckBlobKey(info.key).ok()) out.push_back(std::move(info));
    }
    if (!page.truncated) break;
    // A listing must never pass for complete when it is not (GC marks from
    // listings): a truncated page without a usable token is an error.
    if (page.next_token.empty() || page.next_token == token) {
      return absl::UnknownError(
          absl::StrCat("listing ", Describe(), " prefix ", Quote(prefix),
                       ": a truncated page without a new continuation token"));
    }
    token = page.next_token;
  }
  std::sort(out.begin(), out.end(),
            [](const BlobInfo& a, const BlobInfo& b) { return a.key < b.key; });
  return out;
}

absl::Status S3BlobStore::Move(const std::string& from, const std::string& to,
                               bool if_absent) {
  RETURN_IF_ERROR(CheckBlobKey(from));
  RETURN_IF_ERROR(CheckBlobKey(to));
  if (if_absent) {
    absl::StatusOr<BlobInfo> there = Head(to);
    if (there.ok()) {
      RETURN_IF_ERROR(Delete(from));
      return absl::AlreadyExistsError(
          absl::StrCat("object ", to, " already exists in ", Describe()));
    }
    if (!absl::IsNotFound(there.status())) return there.status();
  }
  Call copy;
  copy.method = "PUT";
  copy.key = to;
  // The source as "/bucket/key", URI-encoded (ObjectPath in path style).
  std::string source = ObjectPath(from);
  if (!config_.path_style) source = absl::StrCat("/", config_.bucket, source);
  copy.headers["x-amz-copy-source"] = source;
  RETURN_IF_ERROR(Execute(copy));
  return Delete(from);
}

absl::Status S3BlobStore::Delete(const std::string& key) {
  RETURN_IF_ERROR(CheckBlobKey(key));
  Call call;
  call.method = "DELETE";
  call.key = key;
  absl::Status s = Execute(call);
  if (absl::IsNotFound(s)) return absl::OkStatus();
  return s;
}

absl::StatusOr<std::vector<IncompleteUpload>>
S3BlobStore::ListIncompleteUploads(const std::string& prefix) const {
  std::vector<IncompleteUpload> out;
  const std::string full_prefix =
      config_.prefix.empty() ? prefix
                             : absl::StrCat(config_.prefix, "/", prefix);
  const size_t strip = config_.prefix.empty() ? 0 : config_.prefix.size() + 1;
  std::string key_marker, id_marker;
  for (;;) {
    Call call;
    call.method = "GET";
    call.bucket_level = true;
    call.query = {{"uploads", ""}, {"prefix", full_prefix}};
    if (!key_marker.empty()) call.query.emplace_back("key-marker", key_marker);
    if (!id_marker.empty()) {
      call.query.emplace_back("upload-id-marker", id_marker);
    }
    RETURN_IF_ERROR(Execute(call));
    s3xml::UploadsPage page =
        s3xml::ParseListMultipartUploads(call.response, strip, absl::Now());
    for (IncompleteUpload& u : page.uploads) {
      if (CheckBlobKey(u.key).ok()) out.push_back(std::move(u));
    }
    if (!page.truncated) break;
    if (page.next_key_marker.empty() ||
        (page.next_key_marker == key_marker &&
         page.next_upload_id_marker == id_marker)) {
      return absl::UnknownError(
          absl::StrCat("listing the multipart uploads of ", Describe(),
                       ": a truncated page without new markers"));
    }
    key_marker = page.next_key_marker;
    id_marker = page.next_upload_id_marker;
  }
  return out;
}

absl::Status S3BlobStore::AbortIncompleteUpload(
    const IncompleteUpload& upload) {
  RETURN_IF_ERROR(CheckBlobKey(upload.key));
  Call call;
  call.method = "DELETE";
  call.key = upload.key;
  call.query = {{"uploadId", upload.upload_id}};
  absl::Status s = Execute(call);
  if (absl::IsNotFound(s)) return absl::OkStatus();  // NoSuchUpload
  return s;
}

absl::Status S3BlobStore::CreateBucket() {
  Call call;
  call.method = "PUT";
  call.bucket_level = true;
  std::string body;
  if (config_.region != "us-east-1") {
    body = absl::StrCat("<CreateBucketConfiguration><LocationConstraint>",
                        config_.region,
                        "</LocationConstraint></CreateBucketConfiguration>");
  }
  call.body = body;
  call.body_sha256 = sigv4::HexSha256(body);
  absl::Status s = Execute(call);
  if (!s.ok() && absl::StrContains(s.message(), "BucketAlreadyOwnedByYou")) {
    return absl::OkStatus();
  }
  return s;
}

}  // namespace shutter::snapshot
