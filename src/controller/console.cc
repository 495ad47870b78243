#include "controller/console.h"

#include <civetweb.h>
#include <grpcpp/grpcpp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "controller/console_assets.h"
#include "controller/tls_front.h"
#include "google/protobuf/util/json_util.h"
#include "shutter/v1/admin.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {
namespace {

using shutter::v1::AdminService;

std::string RandomHex(int bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), bytes) != 1) {
    // Never expected; a session id must not be guessable, so stop here.
    spdlog::critical("console: no random bytes from OpenSSL");
    std::abort();
  }
  return absl::BytesToHexString(raw);
}

// A JSON string literal (RFC 8259 escaping; control characters as \u00XX).
std::string JsonString(absl::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == '<' || c == '>' || c == '&') {
          // <, > and & escaped too, so JSON can never close a script tag.
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string ProtoJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.always_print_primitive_fields = true;
  o.preserve_proto_field_names = true;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(m, &out, o).ok()) {
    return "null";
  }
  return out;
}

// What a request handler answers.
struct Reply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

Reply JsonError(int status, absl::string_view code, absl::string_view message,
                absl::string_view leader = "") {
  Reply r;
  r.status = status;
  r.body = absl::StrCat("{\"code\":", JsonString(code),
                        ",\"message\":", JsonString(message));
  if (!leader.empty())
    absl::StrAppend(&r.body, ",\"leader\":", JsonString(leader));
  r.body += "}";
  return r;
}

int HttpStatusOf(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::UNAUTHENTICATED:
      return 401;
    case grpc::StatusCode::PERMISSION_DENIED:
      return 403;
    case grpc::StatusCode::NOT_FOUND:
      return 404;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return 400;
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::ABORTED:
      return 409;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 503;
    default:
      return 500;
  }
}

// The short state codes of the timeline view (documented with it).
char TaskStateCode(shutter::v1::PartitionTaskState s) {
  switch (s) {
    case shutter::v1::PARTITION_TASK_STATE_QUEUED:
      return 'q';
    case shutter::v1::PARTITION_TASK_STATE_RUNNING:
      return 'r';
    case shutter::v1::PARTITION_TASK_STATE_PUBLISHED:
      return 'p';
    case shutter::v1::PARTITION_TASK_STATE_FAILED:
      return 'f';
    case shutter::v1::PARTITION_TASK_STATE_WAITING:
      return 'w';
    case shutter::v1::PARTITION_TASK_STATE_CANCELLED:
      return 'c';
    default:
      return '?';
  }
}

std::map<std::string, std::string> ParseQuery(const char* query) {
  std::map<std::string, std::string> out;
  if (query == nullptr) return out;
  for (absl::string_view kv : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p =
        absl::StrSplit(kv, absl::MaxSplits('=', 1));
    std::vector<char> k(p.first.size() + 1), v(p.second.size() + 1);
    mg_url_decode(p.first.data(), static_cast<int>(p.first.size()), k.data(),
                  static_cast<int>(k.size()), 1);
    mg_url_decode(p.second.data(), static_cast<int>(p.second.size()), v.data(),
                  static_cast<int>(v.size()), 1);
    out[k.data()] = v.data();
  }
  return out;
}

}  // namespace

class Console::Impl {
 public:
  Impl(Options options, std::shared_ptr<grpc::Channel> admin,
       std::shared_ptr<Authorizer> authz)
      : options_(std::move(options)),
        stub_(AdminService::NewStub(std::move(admin))),
        authz_(std::move(authz)),
        tls_(!options_.tls.insecure) {}

  ~Impl() {
    front_.reset();
    if (ctx_ != nullptr) mg_stop(ctx_);
    absl::MutexLock l(&mu_);
    for (const auto& [cn, s] : cert_sessions_) {
      authz_->RemoveSessionToken(s.token);
    }
  }

  absl::Status Start();
  int port() const { return port_; }

  // civetweb's entry point for every request.
  static int Handle(mg_connection* conn, void* self) {
    return static_cast<Impl*>(self)->Serve(conn);
  }

 private:
  struct Session {
    std::string token;  // "" when authorization is off
    Role role = Role::kNone;
    std::string csrf;
    absl::Time expires;
    std::string identity;  // a client certificate's common name, if by one
  };
  // Who sent a request: the browser's address (behind the TLS front, the
  // front says) and its verified certificate's common name, if any.
  struct Client {
    std::string ip;
    std::string common_name;
  };
  Client ClientOf(mg_connection* conn) const;
  // A certificate's session: one per identity, for the console's life.
  Session CertSession(const std::string& common_name, Role role)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Refused logins: true if `ip` is over the limit now.
  bool LoginBlocked(const std::string& ip) ABSL_LOCKS_EXCLUDED(mu_);
  void LoginFailed(const std::string& ip) ABSL_LOCKS_EXCLUDED(mu_);

  int Serve(mg_connection* conn);
  Reply Route(mg_connection* conn, const std::string& method,
              const std::string& path, const std::optional<Session>& session,
              bool bearer);
  Reply Login(mg_connection* conn, const Client& client);
  Reply LoginPage(absl::string_view message, int status);
  std::optional<Session> FindSession(mg_connection* conn, const Client& client,
                                     bool* bearer);

  // Admin API calls carrying the session's token.
  void Prepare(grpc::ClientContext* ctx, const Session& s) const {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::seconds(10));
    if (!s.token.empty()) {
      ctx->AddMetadata("authorization", "Bearer " + s.token);
    }
  }
  static Reply FromStatus(const grpc::Status& st,
                          const grpc::ClientContext& ctx) {
    std::string leader;
    auto md = ctx.GetServerTrailingMetadata();
    auto it = md.find("shutter-leader");
    if (it != md.end()) leader.assign(it->second.data(), it->second.size());
    return JsonError(HttpStatusOf(st.error_code()),
                     absl::StatusCodeToString(
                         static_cast<absl::StatusCode>(st.error_code())),
                     st.error_message(), leader);
  }
  template <typename Req, typename Resp>
  grpc::Status Call(grpc::Status (AdminService::Stub::*m)(grpc::ClientContext*,
                                                          const Req&, Resp*),
                    const Session& s, const Req& req, Resp* resp,
                    Reply* error) {
    grpc::ClientContext ctx;
    Prepare(&ctx, s);
    grpc::Status st = (stub_.get()->*m)(&ctx, req, resp);
    if (!st.ok()) *error = FromStatus(st, ctx);
    return st;
  }

  Reply SessionView(const Session& s);
  Reply Overview(const Session& s);
  Reply Jobs(const Session& s, const std::map<std::string, std::string>& q);
  Reply Job(const Session& s, const std::string& id,
            const std::map<std::string, std::string>& q);
  Reply Timeline(const Session& s, const std::string& id);
  // The call's answer as JSON, or its error.
  template <typename Req, typename Resp>
  Reply Answer(grpc::Status (AdminService::Stub::*m)(grpc::ClientContext*,
                                                     const Req&, Resp*),
               const Session& s, const Req& req = Req()) {
    Resp resp;
    Reply err;
    if (!Call(m, s, req, &resp, &err).ok()) return err;
    Reply r;
    r.body = ProtoJson(resp);
    return r;
  }
  Reply Repository(const Session& s);
  // The newest `limit` jobs of `type` (ListSnapshots).
  grpc::Status ListJobs(const Session& s, v1::JobType type, uint32_t limit,
                        v1::ListSnapshotsResponse* list, Reply* error) {
    v1::ListSnapshotsRequest req;
    req.set_type(type);
    req.set_limit(limit);
    return Call(&AdminService::Stub::ListSnapshots, s, req, list, error);
  }
  // POSTs whose body is the admin request in JSON.
  template <typename Req, typename Resp>
  Reply PostJson(grpc::Status (AdminService::Stub::*m)(grpc::ClientContext*,
                                                       const Req&, Resp*),
                 mg_connection* conn, const Session& s);
  Reply Cancel(const Session& s, const std::string& id);

  const Options options_;
  const std::unique_ptr<AdminService::Stub> stub_;
  const std::shared_ptr<Authorizer> authz_;
  const bool tls_;
  mg_context* ctx_ = nullptr;
  std::unique_ptr<TlsFront> front_;  // with TLS
  int port_ = 0;
  absl::Mutex mu_;
  std::map<std::string, Session> sessions_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Session> cert_sessions_ ABSL_GUARDED_BY(mu_);
  struct Failures {
    int count = 0;
    absl::Time first;
  };
  std::map<std::string, Failures> login_failures_ ABSL_GUARDED_BY(mu_);
};

absl::Status Console::Impl::Start() {
  // With TLS, civetweb listens in plaintext on loopback behind a TlsFront
  // (see tls_front.h for why civetweb's own TLS is not used).
  const std::string ports = tls_ ? "127.0.0.1:0" : options_.listen;
  std::vector<const char*> opts = {"listening_ports",
                                   ports.c_str(),
                                   "num_threads",
                                   "8",
                                   "request_timeout_ms",
                                   "30000",
                                   "enable_keep_alive",
                                   "yes",
                                   nullptr};
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof(callbacks));
  // civetweb prints its own errors; keep them in our log.
  callbacks.log_message = [](const mg_connection*, const char* message) {
    spdlog::warn("console: {}", message);
    return 1;
  };
  ctx_ = mg_start(&callbacks, this, opts.data());
  if (ctx_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve the console on \"", options_.listen,
                     "\" (address in use or not available",
                     tls_ ? ", or TLS setup" : "", ")"));
  }
  mg_set_request_handler(ctx_, "/", &Impl::Handle, this);
  mg_server_port sp[4];
  const int n = mg_get_server_ports(ctx_, 4, sp);
  port_ = n > 0 ? sp[0].port : 0;
  if (tls_) {
    ASSIGN_OR_RETURN(front_,
                     TlsFront::Start(options_.listen, options_.tls.cert,
                                     options_.tls.key, options_.tls.ca, port_));
    port_ = front_->port();
  }
  return absl::OkStatus();
}

Console::Impl::Client Console::Impl::ClientOf(mg_connection* conn) const {
  const mg_request_info* ri = mg_get_request_info(conn);
  Client c;
  c.ip = ri->remote_addr;
  if (front_ != nullptr) {
    // civetweb sees the front's loopback connection; the front knows who
    // is behind it. Nothing there: not relayed by the front (someone on
    // this host reached the loopback port directly): no certificate.
    std::optional<TlsFront::Peer> peer = front_->PeerOf(ri->remote_port);
    if (peer.has_value()) {
      c.ip = peer->address.substr(0, peer->address.rfind(':'));
      c.common_name = peer->common_name;
    }
  }
  return c;
}

Console::Impl::Session Console::Impl::CertSession(
    const std::string& common_name, Role role) {
  absl::MutexLock l(&mu_);
  auto it = cert_sessions_.find(common_name);
  if (it == cert_sessions_.end()) {
    Session s;
    s.token = RandomHex(32);
    s.role = role;
    s.csrf = RandomHex(16);
    s.expires = absl::InfiniteFuture();
    s.identity = common_name;
    authz_->AddSessionToken(s.token, role);
    it = cert_sessions_.emplace(common_name, std::move(s)).first;
  }
  return it->second;
}

bool Console::Impl::LoginBlocked(const std::string& ip) {
  absl::MutexLock l(&mu_);
  auto it = login_failures_.find(ip);
  if (it == login_failures_.end()) return false;
  if (absl::Now() - it->second.first > Console::kLoginFailureWindow) {
    login_failures_.erase(it);
    return false;
  }
  return it->second.count >= Console::kMaxLoginFailures;
}

void Console::Impl::LoginFailed(const std::string& ip) {
  const absl::Time now = absl::Now();
  absl::MutexLock l(&mu_);
  // Bounded: old windows go first; past 10,000 addresses, all of them.
  for (auto it = login_failures_.begin(); it != login_failures_.end();) {
    it = now - it->second.first > Console::kLoginFailureWindow
             ? login_failures_.erase(it)
             : std::next(it);
  }
  if (login_failures_.size() >= 10000) login_failures_.clear();
  Failures& f = login_failures_[ip];
  if (f.count == 0) f.first = now;
  ++f.count;
}

std::optional<Console::Impl::Session> Console::Impl::FindSession(
    mg_connection* conn, const Client& client, bool* bearer) {
  *bearer = false;
  if (!authz_->enabled()) {
    // No authorization anywhere: one implicit session.
    static const std::string kCsrf = RandomHex(16);
    return Session{"", Role::kOperator, kCsrf, absl::InfiniteFuture(), ""};
  }
  if (const char* auth = mg_get_header(conn, "Authorization")) {
    absl::string_view v(auth);
    if (absl::ConsumePrefix(&v, "Bearer ")) {
      *bearer = true;
      Session s;
      s.token = std::string(absl::StripAsciiWhitespace(v));
      s.role = authz_->RoleOfToken(s.token);
      return s;
    }
  }
  const char* cookies = mg_get_header(conn, "Cookie");
  char id[128];
  if (cookies != nullptr &&
      mg_get_cookie(cookies, "shutter_session", id, sizeof(id)) > 0) {
    absl::MutexLock l(&mu_);
    auto it = sessions_.find(id);
    if (it != sessions_.end()) {
      if (absl::Now() <= it->second.expires) return it->second;
      sessions_.erase(it);
    }
  }
  // A client certificate on the admin list logs its holder in.
  if (!client.common_name.empty()) {
    const Role role = authz_->RoleOfIdentity(client.common_name);
    if (role != Role::kNone) return CertSession(client.common_name, role);
  }
  return std::nullopt;
}

int Console::Impl::Serve(mg_connection* conn) {
  const mg_request_info* ri = mg_get_request_info(conn);
  const std::string method = ri->request_method ? ri->request_method : "";
  const std::string path = ri->local_uri ? ri->local_uri : "/";
  bool bearer = false;
  const Client client = ClientOf(conn);
  std::optional<Session> session = FindSession(conn, client, &bearer);
  Reply r;
  if (method == "POST" && path == "/login") {
    r = Login(conn, client);
  } else if (path == "/console.js" || path == "/console.css" ||
             path == "/favicon.svg") {
    // The assets hold no data: served to anyone.
    const ConsoleAsset* a = FindConsoleAsset(path.substr(1));
    r.content_type = a->content_type;
    r.body = std::string(a->data, a->size);
    r.headers.emplace_back("Cache-Control", "no-cache");
  } else if (!session.has_value()) {
    if (absl::StartsWith(path, "/api/")) {
      r = JsonError(401, "UNAUTHENTICATED",
                    "log in first (POST /login) or send a bearer token");
    } else {
      r = LoginPage("", 200);
    }
  } else if (session->role == Role::kNone) {
    r = absl::StartsWith(path, "/api/")
            ? JsonError(401, "UNAUTHENTICATED",
                        "the bearer token is not valid for this controller")
            : LoginPage("That token is not valid here.", 401);
  } else {
    r = Route(conn, method, path, session, bearer);
  }
  std::string head = absl::StrCat(
      "HTTP/1.1 ", r.status, " ", mg_get_response_code_text(conn, r.status),
      "\r\nContent-Type: ", r.content_type,
      "\r\nContent-Length: ", r.body.size(),
      "\r\nX-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY"
      "\r\nReferrer-Policy: no-referrer"
      "\r\nContent-Security-Policy: default-src 'self'; img-src 'self' data:;"
      " frame-ancestors 'none'; form-action 'self'\r\n");
  if (absl::StartsWith(path, "/api/")) head += "Cache-Control: no-store\r\n";
  for (const auto& [k, v] : r.headers)
    absl::StrAppend(&head, k, ": ", v, "\r\n");
  head += "\r\n";
  mg_write(conn, head.data(), head.size());
  if (method != "HEAD") mg_write(conn, r.body.data(), r.body.size());
  return r.status;
}

Reply Console::Impl::LoginPage(absl::string_view message, int status) {
  Reply r;
  r.status = status;
  r.content_type = "text/html; charset=utf-8";
  const ConsoleAsset* a = FindConsoleAsset("login.html");
  r.body = std::string(a->data, a->size);
  // The message is fixed text of ours, never the request's.
  const std::string slot = "<!--message-->";
  const size_t at = r.body.find(slot);
  if (at != std::string::npos && !message.empty()) {
    r.body.replace(
        at, slot.size(),
        absl::StrCat("<p class=\"error\" role=\"alert\">", message, "</p>"));
  }
  return r;
}

Reply Console::Impl::Login(mg_connection* conn, const Client& client) {
  if (authz_->enabled() && LoginBlocked(client.ip)) {
    spdlog::warn("console: login from {} refused: {} failed logins within {}",
                 client.ip, Console::kMaxLoginFailures,
                 absl::FormatDuration(Console::kLoginFailureWindow));
    Reply r = LoginPage(
        "Too many failed logins from your address: try again later.", 429);
    r.headers.emplace_back(
        "Retry-After",
        std::to_string(absl::ToInt64Seconds(Console::kLoginFailureWindow)));
    return r;
  }
  char body[4096];
  const int n = mg_read(conn, body, sizeof(body) - 1);
  body[std::max(n, 0)] = '\0';
  char token[1024];
  if (mg_get_var(body, std::strlen(body), "token", token, sizeof(token)) < 0) {
    return LoginPage("Enter a token.", 400);
  }
  const Role role = authz_->RoleOfToken(token);
  if (!authz_->enabled()) {
    Reply r;
    r.status = 303;
    r.headers.emplace_back("Location", "/");
    return r;
  }
  if (role == Role::kNone) {
    LoginFailed(client.ip);
    spdlog::warn("console: login refused (unknown token) from {}", client.ip);
    return LoginPage("That token is not valid here.", 401);
  }
  Session s;
  s.token = token;
  s.role = role;
  s.csrf = RandomHex(16);
  s.expires = absl::Now() + options_.session_ttl;
  const std::string id = RandomHex(32);
  {
    absl::MutexLock l(&mu_);
    // Drop expired sessions as new ones come.
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      it = absl::Now() > it->second.expires ? sessions_.erase(it)
                                            : std::next(it);
    }
    sessions_[id] = s;
  }
  Reply r;
  r.status = 303;
  r.content_type = "text/plain";
  r.headers.emplace_back("Location", "/");
  r.headers.emplace_back(
      "Set-Cookie",
      absl::StrCat("shutter_session=", id,
                   "; Path=/; HttpOnly; SameSite=Strict; Max-Age=",
                   absl::ToInt64Seconds(options_.session_ttl),
                   tls_ ? "; Secure" : ""));
  return r;
}

Reply Console::Impl::Route(mg_connection* conn, const std::string& method,
                           const std::string& path,
                           const std::optional<Session>& session, bool bearer) {
  const Session& s = *session;
  if (method == "POST") {
    // Reads only for bearer callers; the console's own forms carry the
    // session's CSRF token.
    const char* csrf = mg_get_header(conn, "X-Shutter-CSRF");
    if (bearer || csrf == nullptr || s.csrf != csrf) {
      return JsonError(403, "PERMISSION_DENIED",
                       "missing or wrong X-Shutter-CSRF header");
    }
    if (path == "/logout") {
      const char* cookies = mg_get_header(conn, "Cookie");
      char id[128];
      if (cookies != nullptr &&
          mg_get_cookie(cookies, "shutter_session", id, sizeof(id)) > 0) {
        absl::MutexLock l(&mu_);
        sessions_.erase(id);
      }
      Reply r;
      r.body = "{}";
      r.headers.emplace_back("Set-Cookie",
                             "shutter_session=; Path=/; HttpOnly; Max-Age=0");
      return r;
    }
    if (path == "/api/v1/snapshots") {
      return PostJson(&AdminService::Stub::CreateSnapshot, conn, s);
    }
    if (path == "/api/v1/restores") {
      return PostJson(&AdminService::Stub::RestoreSnapshot, conn, s);
    }
    std::vector<std::string> parts = absl::StrSplit(path, '/');
    // "", "api", "v1", "jobs", <id>, "cancel"
    if (parts.size() == 6 && parts[3] == "jobs" && parts[5] == "cancel") {
      return Cancel(s, parts[4]);
    }
    return JsonError(404, "NOT_FOUND", "no such action");
  }
  if (method != "GET" && method != "HEAD") {
    return JsonError(405, "INVALID_ARGUMENT", "GET or POST only");
  }
  if (!absl::StartsWith(path, "/api/")) {
    if (path != "/" && path != "/index.html") {
      Reply r = JsonError(404, "NOT_FOUND", "no such page");
      return r;
    }
    const ConsoleAsset* a = FindConsoleAsset("index.html");
    Reply r;
    r.content_type = a->content_type;
    r.body = std::string(a->data, a->size);
    r.headers.emplace_back("Cache-Control", "no-cache");
    return r;
  }
  const auto q = ParseQuery(mg_get_request_info(conn)->query_string);
  if (path == "/api/v1/session") return SessionView(s);
  if (path == "/api/v1/overview") return Overview(s);
  if (path == "/api/v1/jobs") return Jobs(s, q);
  if (path == "/api/v1/nodes") {
    return Answer(&AdminService::Stub::ListNodes, s);
  }
  if (path == "/api/v1/schedules") {
    return Answer(&AdminService::Stub::ListSchedules, s);
  }
  if (path == "/api/v1/repository") return Repository(s);
  if (path == "/api/v1/controllers") {
    return Answer(&AdminService::Stub::ListControllers, s);
  }
  std::vector<std::string> parts = absl::StrSplit(path, '/');
  if (parts.size() == 5 && parts[3] == "jobs") return Job(s, parts[4], q);
  if (parts.size() == 6 && parts[3] == "jobs" && parts[5] == "timeline") {
    return Timeline(s, parts[4]);
  }
  return JsonError(404, "NOT_FOUND", "no such view");
}

Reply Console::Impl::SessionView(const Session& s) {
  Reply r;
  r.body = absl::StrCat(
      "{\"auth\":", authz_->enabled() ? "true" : "false", ",\"role\":",
      JsonString(s.role == Role::kOperator ? "operator" : "viewer"),
      ",\"csrf\":", JsonString(s.csrf),
      ",\"certificate\":", JsonString(s.identity), "}");
  return r;
}

Reply Console::Impl::Overview(const Session& s) {
  Reply err;
  v1::ListControllersResponse controllers;
  if (!Call(&AdminService::Stub::ListControllers, s,
            v1::ListControllersRequest(), &controllers, &err)
           .ok()) {
    return err;
  }
  std::string out = absl::StrCat("{\"controllers\":", ProtoJson(controllers));
  // The rest needs the leader; on a follower say who leads instead.
  v1::ListNodesResponse nodes;
  if (!Call(&AdminService::Stub::ListNodes, s, v1::ListNodesRequest(), &nodes,
            &err)
           .ok()) {
    absl::StrAppend(&out, ",\"error\":", err.body, "}");
    Reply r;
    r.body = std::move(out);
    return r;
  }
  v1::ListPartitionsResponse partitions;
  if (!Call(&AdminService::Stub::ListPartitions, s, v1::ListPartitionsRequest(),
            &partitions, &err)
           .ok()) {
    return err;
  }
  int leaderless = 0;
  for (const auto& p : partitions.partitions()) {
    leaderless += p.leader_node_id().empty();
  }
  int alive = 0;
  // Live nodes held below their capacity (pinned, or the adaptive rule
  // backing off), with why and since when.
  std::string limited;
  // Live nodes whose last interval had write stalls (the foreground
  // suffers; the adaptive rule backs off at once).
  std::string stalled;
  for (const auto& n : nodes.nodes()) {
    alive += n.alive();
    if (n.alive() && n.load().write_stall_micros() > 0) {
      absl::StrAppend(&stalled, stalled.empty() ? "" : ",",
                      "{\"node_id\":", JsonString(n.node_id()),
                      ",\"stall_micros\":", n.load().write_stall_micros(),
                      ",\"interval_millis\":", n.load().interval_millis(), "}");
    }
    if (!n.alive() || n.effective_limit() >= n.checkpoint_capacity()) continue;
    const int64_t since =
        n.limit_changes_size() > 0
            ? n.limit_changes(n.limit_changes_size() - 1).at_micros()
            : 0;
    absl::StrAppend(&limited, limited.empty() ? "" : ",",
                    "{\"node_id\":", JsonString(n.node_id()),
                    ",\"limit\":", n.effective_limit(),
                    ",\"capacity\":", n.checkpoint_capacity(),
                    ",\"pinned\":", n.pinned_limit() > 0 ? "true" : "false",
                    ",\"reason\":", JsonString(n.limit_reason()),
                    ",\"since_micros\":", since, "}");
  }
  absl::StrAppend(
      &out, ",\"nodes\":{\"total\":", nodes.nodes_size(), ",\"alive\":", alive,
      "},\"partitions\":{\"total\":", partitions.partitions_size(),
      ",\"leaderless\":", leaderless, "},\"limited\":[", limited,
      "],\"stalled\":[", stalled, "],\"denials\":", authz_->denials());
  // Running jobs of every kind, and the newest of each kind.
  out += ",\"running\":[";
  bool first = true;
  std::string newest;
  // The newest GC and deletion (retention deletes through DELETE jobs).
  std::string last_gc = "null", last_delete = "null";
  for (v1::JobType type :
       {v1::JOB_TYPE_SNAPSHOT, v1::JOB_TYPE_RESTORE, v1::JOB_TYPE_VERIFY,
        v1::JOB_TYPE_GC, v1::JOB_TYPE_DELETE}) {
    v1::ListSnapshotsResponse list;
    if (!ListJobs(s, type, 20, &list, &err).ok()) return err;
    for (const auto& j : list.snapshots()) {
      if (j.state() == v1::SNAPSHOT_STATE_RUNNING ||
          j.state() == v1::SNAPSHOT_STATE_PENDING) {
        absl::StrAppend(&out, first ? "" : ",", ProtoJson(j));
        first = false;
      }
    }
    if (type == v1::JOB_TYPE_GC && list.snapshots_size() > 0) {
      last_gc = ProtoJson(list.snapshots(0));
    }
    if (type == v1::JOB_TYPE_DELETE && list.snapshots_size() > 0) {
      last_delete = ProtoJson(list.snapshots(0));
    }
    if (type == v1::JOB_TYPE_SNAPSHOT) {
      for (const auto& j : list.snapshots()) {
        if (j.state() == v1::SNAPSHOT_STATE_COMMITTED) {
          newest = ProtoJson(j);
          break;
        }
      }
    }
  }
  absl::StrAppend(&out,
                  "],\"last_committed\":", newest.empty() ? "null" : newest,
                  ",\"last_gc\":", last_gc, ",\"last_delete\":", last_delete);
  v1::ListSchedulesResponse schedules;
  if (!Call(&AdminService::Stub::ListSchedules, s, v1::ListSchedulesRequest(),
            &schedules, &err)
           .ok()) {
    return err;
  }
  absl::StrAppend(&out, ",\"schedules\":", ProtoJson(schedules),
                  ",\"now_micros\":", absl::ToUnixMicros(absl::Now()), "}");
  Reply r;
  r.body = std::move(out);
  return r;
}

Reply Console::Impl::Jobs(const Session& s,
                          const std::map<std::string, std::string>& q) {
  v1::ListSnapshotsRequest req;
  auto get = [&](const char* k) {
    auto it = q.find(k);
    return it == q.end() ? std::string() : it->second;
  };
  const std::string type = get("type");
  if (!type.empty()) {
    v1::JobType t;
    if (!v1::JobType_Parse("JOB_TYPE_" + absl::AsciiStrToUpper(type), &t)) {
      return JsonError(400, "INVALID_ARGUMENT",
                       "type: snapshot, restore, verify, gc or delete");
    }
    req.set_type(t);
  }
  const std::string state = get("state");
  v1::SnapshotState want = v1::SNAPSHOT_STATE_UNSPECIFIED;
  if (!state.empty() &&
      !v1::SnapshotState_Parse("SNAPSHOT_STATE_" + absl::AsciiStrToUpper(state),
                               &want)) {
    return JsonError(400, "INVALID_ARGUMENT", "unknown state");
  }
  const std::string label = get("label");
  uint32_t limit = 100;
  if (!get("limit").empty() && !absl::SimpleAtoi(get("limit"), &limit)) {
    return JsonError(400, "INVALID_ARGUMENT", "limit: a number");
  }
  v1::ListSnapshotsResponse list;
  Reply err;
  if (!Call(&AdminService::Stub::ListSnapshots, s, req, &list, &err).ok()) {
    return err;
  }
  v1::ListSnapshotsResponse out;
  for (const auto& j : list.snapshots()) {
    if (want != v1::SNAPSHOT_STATE_UNSPECIFIED && j.state() != want) continue;
    if (!label.empty() && !absl::StrContains(j.label(), label)) continue;
    if (limit != 0 && static_cast<uint32_t>(out.snapshots_size()) >= limit)
      break;
    *out.add_snapshots() = j;
  }
  Reply r;
  r.body = ProtoJson(out);
  return r;
}

Reply Console::Impl::Job(const Session& s, const std::string& id,
                         const std::map<std::string, std::string>& q) {
  v1::GetSnapshotRequest req;
  req.set_snapshot_id(id);
  auto it = q.find("page_size");
  uint32_t size = 100;
  if (it != q.end() && !absl::SimpleAtoi(it->second, &size)) {
    return JsonError(400, "INVALID_ARGUMENT", "page_size: a number");
  }
  req.set_page_size(std::min<uint32_t>(size, 1000));
  it = q.find("page_token");
  if (it != q.end()) req.set_page_token(it->second);
  it = q.find("state");
  if (it != q.end() && !it->second.empty()) {
    v1::PartitionTaskState st;
    if (!v1::PartitionTaskState_Parse(
            "PARTITION_TASK_STATE_" + absl::AsciiStrToUpper(it->second), &st)) {
      return JsonError(400, "INVALID_ARGUMENT", "unknown partition state");
    }
    req.add_states(st);
  }
  return Answer(&AdminService::Stub::GetSnapshot, s, req);
}

Reply Console::Impl::Timeline(const Session& s, const std::string& id) {
  // Every task, compactly: [partition, node index, start ms, duration ms,
  // state, attempts] and, for a waiting task, what it waits for; times
  // relative to the job's creation.
  v1::GetSnapshotRequest req;
  req.set_snapshot_id(id);
  req.set_page_size(10000);
  std::map<std::string, int> node_index;
  std::vector<std::string> nodes;
  std::string tasks;
  const int64_t now = absl::ToUnixMicros(absl::Now());
  int64_t t0 = 0;
  std::string job_state;
  int count = 0;
  for (;;) {
    v1::GetSnapshotResponse resp;
    Reply err;
    if (!Call(&AdminService::Stub::GetSnapshot, s, req, &resp, &err).ok()) {
      return err;
    }
    const v1::Snapshot& snap = resp.snapshot();
    t0 = snap.created_at_micros();
    job_state = v1::SnapshotState_Name(snap.state());
    for (const auto& t : snap.partitions()) {
      int ni = -1;
      if (!t.node_id().empty()) {
        auto [it, added] = node_index.emplace(t.node_id(), nodes.size());
        if (added) nodes.push_back(t.node_id());
        ni = it->second;
      }
      int64_t start = -1, dur = -1;
      if (t.started_at_micros() > 0) {
        start = (t.started_at_micros() - t0) / 1000;
        dur = t.state() == v1::PARTITION_TASK_STATE_RUNNING
                  ? std::max<int64_t>(0, (now - t.started_at_micros()) / 1000)
                  : t.duration_millis();
      }
      absl::StrAppend(&tasks, count++ ? "," : "", "[", t.partition_id(), ",",
                      ni, ",", start, ",", dur, ",\"",
                      std::string(1, TaskStateCode(t.state())), "\",",
                      t.attempts());
      if (!t.waiting_for().empty()) {
        absl::StrAppend(&tasks, ",", JsonString(t.waiting_for()));
      }
      tasks += "]";
    }
    if (resp.next_page_token().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  std::string names;
  for (size_t i = 0; i < nodes.size(); ++i) {
    absl::StrAppend(&names, i ? "," : "", JsonString(nodes[i]));
  }
  Reply r;
  r.body = absl::StrCat("{\"snapshot_id\":", JsonString(id),
                        ",\"state\":", JsonString(job_state),
                        ",\"created_at_micros\":", t0, ",\"now_micros\":", now,
                        ",\"nodes\":[", names, "],\"tasks\":[", tasks, "]}");
  return r;
}

template <typename Req, typename Resp>
Reply Console::Impl::PostJson(grpc::Status (AdminService::Stub::*m)(
                                  grpc::ClientContext*, const Req&, Resp*),
                              mg_connection* conn, const Session& s) {
  // A request names at most every partition: 64 KiB is plenty, and bounds
  // what one caller makes this process hold.
  std::string body;
  char buf[4096];
  for (int n; (n = mg_read(conn, buf, sizeof(buf))) > 0;) {
    body.append(buf, static_cast<size_t>(n));
    if (body.size() > 64 * 1024) {
      return JsonError(413, "INVALID_ARGUMENT", "the body is over 64 KiB");
    }
  }
  Req req;
  if (!body.empty()) {
    google::protobuf::util::JsonParseOptions o;
    if (!google::protobuf::util::JsonStringToMessage(body, &req, o).ok()) {
      return JsonError(400, "INVALID_ARGUMENT",
                       absl::StrCat("the body must be a ",
                                    Req::descriptor()->name(), " in JSON"));
    }
  }
  return Answer(m, s, req);
}

Reply Console::Impl::Repository(const Session& s) {
  Reply err;
  v1::GetRepositoryStatsResponse stats;
  if (!Call(&AdminService::Stub::GetRepositoryStats, s,
            v1::GetRepositoryStatsRequest(), &stats, &err)
           .ok()) {
    return err;
  }
  // Growth: what each of the newest snapshots stored anew versus what it
  // holds, oldest first.
  v1::ListSnapshotsResponse snaps;
  if (!ListJobs(s, v1::JOB_TYPE_SNAPSHOT, 200, &snaps, &err).ok()) return err;
  std::vector<std::string> rows;  // newest first, as listed
  for (const auto& j : snaps.snapshots()) {
    if (j.state() != v1::SNAPSHOT_STATE_COMMITTED &&
        j.state() != v1::SNAPSHOT_STATE_PARTIAL) {
      continue;
    }
    if (rows.size() == 50) break;
    rows.push_back(absl::StrCat("[", JsonString(j.snapshot_id()), ",",
                                j.created_at_micros(), ",", j.total_bytes(),
                                ",", j.uploaded_bytes(), "]"));
  }
  const std::string growth = absl::StrJoin(rows.rbegin(), rows.rend(), ",");
  // Garbage collections: the newest ten, with what each freed.
  v1::ListSnapshotsResponse gcs;
  if (!ListJobs(s, v1::JOB_TYPE_GC, 10, &gcs, &err).ok()) return err;
  std::string runs;
  for (const auto& j : gcs.snapshots()) {
    v1::GetSnapshotRequest gr;
    gr.set_snapshot_id(j.snapshot_id());
    gr.set_summary_only(true);
    v1::GetSnapshotResponse g;
    if (!Call(&AdminService::Stub::GetSnapshot, s, gr, &g, &err).ok()) {
      continue;  // pruned or gone meanwhile
    }
    absl::StrAppend(&runs, runs.empty() ? "" : ",",
                    "{\"gc_id\":", JsonString(j.snapshot_id()), ",\"state\":",
                    JsonString(v1::SnapshotState_Name(j.state())),
                    ",\"created_at_micros\":", j.created_at_micros(),
                    ",\"finished_at_micros\":", j.finished_at_micros(),
                    ",\"error\":", JsonString(g.snapshot().error()),
                    ",\"result\":", ProtoJson(g.snapshot().gc()), "}");
  }
  Reply r;
  r.body = absl::StrCat("{\"stats\":", ProtoJson(stats), ",\"growth\":[",
                        growth, "],\"gc_runs\":[", runs, "]}");
  return r;
}

Reply Console::Impl::Cancel(const Session& s, const std::string& id) {
  v1::CancelSnapshotRequest req;
  req.set_snapshot_id(id);
  return Answer(&AdminService::Stub::CancelSnapshot, s, req);
}

absl::StatusOr<std::unique_ptr<Console>> Console::Start(
    const Options& options, std::shared_ptr<grpc::Channel> admin,
    std::shared_ptr<Authorizer> authz) {
  auto impl =
      std::make_unique<Impl>(options, std::move(admin), std::move(authz));
  RETURN_IF_ERROR(impl->Start());
  return std::unique_ptr<Console>(new Console(std::move(impl)));
}

Console::Console(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Console::~Console() = default;
int Console::port() const { return impl_->port(); }

}  // namespace shutter::controller
