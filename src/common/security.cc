#include "common/security.h"

#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/rpc.h"
#include "common/status_macros.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "grpcpp/server_context.h"
#include "spdlog/spdlog.h"

namespace shutter {

namespace {

struct BioCloser {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Closer {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyCloser {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using X509Ptr = std::unique_ptr<X509, X509Closer>;

absl::StatusOr<std::unique_ptr<BIO, BioCloser>> OpenPem(
    const std::string& flag, const std::string& path) {
  std::unique_ptr<BIO, BioCloser> bio(BIO_new_file(path.c_str(), "r"));
  if (bio == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read ", path));
  }
  return bio;
}

absl::StatusOr<X509Ptr> ReadCert(const std::string& flag,
                                 const std::string& path) {
  ASSIGN_OR_RETURN(auto bio, OpenPem(flag, path));
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", path, " holds no PEM certificate"));
  }
  return cert;
}

absl::Status CheckValidNow(const std::string& flag, const std::string& path,
                           X509* cert) {
  if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": the certificate in ", path, " is not valid yet"));
  }
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": the certificate in ", path, " has expired"));
  }
  return absl::OkStatus();
}

absl::Status CheckFiles(const TlsOptions& o, bool identity) {
  {
    ASSIGN_OR_RETURN(X509Ptr ca, ReadCert("--tls-ca", o.ca));
    RETURN_IF_ERROR(CheckValidNow("--tls-ca", o.ca, ca.get()));
  }
  if (!identity) return absl::OkStatus();
  ASSIGN_OR_RETURN(X509Ptr cert, ReadCert("--tls-cert", o.cert));
  RETURN_IF_ERROR(CheckValidNow("--tls-cert", o.cert, cert.get()));
  ASSIGN_OR_RETURN(auto bio, OpenPem("--tls-key", o.key));
  std::unique_ptr<EVP_PKEY, KeyCloser> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-key: ", o.key, " holds no PEM private key"));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-key: ", o.key,
                     " is not the key of the certificate in ", o.cert));
  }
  return absl::OkStatus();
}

absl::StatusOr<Role> ParseRole(absl::string_view s) {
  if (s == "viewer") return Role::kViewer;
  if (s == "operator") return Role::kOperator;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown role \"", absl::CHexEscape(s), "\" (viewer or operator)"));
}

const char* RoleName(Role r) {
  switch (r) {
    case Role::kViewer:
      return "viewer";
    case Role::kOperator:
      return "operator";
    case Role::kNone:
      break;
  }
  return "none";
}

// Constant-time lookup of a bearer token.
Role TokenRole(const std::map<std::string, Role>& tokens,
               absl::string_view token) {
  Role found = Role::kNone;
  for (const auto& [t, role] : tokens) {
    if (t.size() == token.size() &&
        CRYPTO_memcmp(t.data(), token.data(), t.size()) == 0) {
      found = role;
    }
  }
  return found;
}

}  // namespace

absl::Status CheckDaemonTls(const TlsOptions& o) {
  const bool any = !o.cert.empty() || !o.key.empty() || !o.ca.empty();
  if (o.insecure) {
    if (any) {
      return absl::InvalidArgumentError(
          "--insecure and --tls-cert/--tls-key/--tls-ca exclude each other");
    }
    return absl::OkStatus();
  }
  if (o.cert.empty() || o.key.empty() || o.ca.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs --tls-cert, --tls-key and --tls-ca (or --insecure for "
        "plaintext, e.g. a local demo)");
  }
  if (o.reload_seconds < 1) {
    return absl::InvalidArgumentError("--tls-reload-seconds must be >= 1");
  }
  return CheckFiles(o, /*identity=*/true);
}

absl::Status CheckClientTls(const TlsOptions& o) {
  if (o.insecure || o.ca.empty()) {
    if (!o.cert.empty() || !o.key.empty()) {
      return absl::InvalidArgumentError(
          "--tls-cert/--tls-key need --tls-ca (the CA of the controller)");
    }
    return absl::OkStatus();
  }
  if (o.cert.empty() != o.key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  return CheckFiles(o, /*identity=*/!o.cert.empty());
}

absl::StatusOr<std::string> CertificateCommonName(const std::string& path) {
  ASSIGN_OR_RETURN(X509Ptr cert, ReadCert("certificate", path));
  char cn[256] = {0};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()),
                                NID_commonName, cn, sizeof(cn)) < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the certificate has no common name"));
  }
  return std::string(cn);
}

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(
    const TlsOptions& o) {
  if (o.insecure) return grpc::InsecureServerCredentials();
  auto provider =
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          o.key, o.cert, o.ca, o.reload_seconds);
  grpc::experimental::TlsServerCredentialsOptions opts(provider);
  opts.watch_root_certs();
  opts.watch_identity_key_cert_pairs();
  // Verified when sent; whether one is needed is the authorizer's call
  // (an operator may use a bearer token instead).
  opts.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(opts);
}

std::shared_ptr<grpc::ChannelCredentials> MakeChannelCredentials(
    const TlsOptions& o) {
  if (o.insecure || o.ca.empty()) return grpc::InsecureChannelCredentials();
  grpc::experimental::TlsChannelCredentialsOptions opts;
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider;
  if (!o.cert.empty()) {
    provider =
        std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
            o.key, o.cert, o.ca, std::max(1, o.reload_seconds));
    opts.watch_identity_key_cert_pairs();
  } else {
    provider =
        std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
            o.ca, std::max(1, o.reload_seconds));
  }
  opts.set_certificate_provider(provider);
  opts.watch_root_certs();
  return grpc::experimental::TlsCredentials(opts);
}

void ConfigureTransportSecurity(const TlsOptions& o) {
  if (o.insecure || o.ca.empty()) {
    SetTransportSecurity(nullptr, nullptr, nullptr);
    return;
  }
  grpc::experimental::TlsChannelCredentialsOptions self;
  self.set_certificate_provider(
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          o.key, o.cert, o.ca, std::max(1, o.reload_seconds)));
  self.watch_root_certs();
  self.watch_identity_key_cert_pairs();
  self.set_verify_server_certs(false);
  self.set_certificate_verifier(
      std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
  self.set_check_call_host(false);
  SetTransportSecurity(MakeServerCredentials(o), MakeChannelCredentials(o),
                       grpc::experimental::TlsCredentials(self));
}

std::shared_ptr<Authorizer> Authorizer::AllowAll() {
  return std::make_shared<Authorizer>(Options{});
}

std::string Authorizer::PeerIdentity(const grpc::ServerContextBase& ctx) {
  auto auth = ctx.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return "";
  auto cn = auth->FindPropertyValues("x509_common_name");
  if (cn.empty()) return "";
  return std::string(cn[0].data(), cn[0].size());
}

absl::Status Authorizer::Deny(absl::Status s,
                              const grpc::ServerContextBase& ctx,
                              absl::string_view method) const {
  const uint64_t n = ++denials_;
  spdlog::warn("denied {} from {} (identity \"{}\"): {} [{} denials so far]",
               std::string(method), ctx.peer(),
               absl::CHexEscape(PeerIdentity(ctx)), std::string(s.message()),
               n);
  return s;
}

Role Authorizer::TokenRoleLocked(absl::string_view token) const {
  token = absl::StripAsciiWhitespace(token);
  const Role r = TokenRole(tokens_, token);
  return r != Role::kNone ? r : TokenRole(session_tokens_, token);
}

Role Authorizer::RoleOfToken(absl::string_view token) const {
  if (!options_.enabled) return Role::kOperator;
  absl::MutexLock l(&mu_);
  return TokenRoleLocked(token);
}

Role Authorizer::RoleOfIdentity(absl::string_view common_name) const {
  if (!options_.enabled) return Role::kOperator;
  auto it = options_.identities.find(std::string(common_name));
  return it == options_.identities.end() ? Role::kNone : it->second;
}

void Authorizer::AddSessionToken(std::string token, Role role) {
  absl::MutexLock l(&mu_);
  session_tokens_[std::move(token)] = role;
}

void Authorizer::RemoveSessionToken(const std::string& token) {
  absl::MutexLock l(&mu_);
  session_tokens_.erase(token);
}

absl::Status Authorizer::CheckAdmin(const grpc::ServerContextBase& ctx,
                                    Role role, absl::string_view method) const {
  if (!options_.enabled) return absl::OkStatus();
  Role have = Role::kNone;
  std::string who;
  const std::string identity = PeerIdentity(ctx);
  if (!identity.empty()) {
    auto it = options_.identities.find(identity);
    if (it != options_.identities.end()) {
      have = it->second;
      who = absl::StrCat("certificate \"", identity, "\"");
    }
  }
  bool token_given = false;
  auto md = ctx.client_metadata().equal_range("authorization");
  for (auto it = md.first; it != md.second; ++it) {
    absl::string_view v(it->second.data(), it->second.size());
    if (!absl::ConsumePrefix(&v, "Bearer ")) continue;
    token_given = true;
    Role r;
    {
      absl::MutexLock l(&mu_);
      r = TokenRoleLocked(v);
    }
    if (r == Role::kNone) {
      return Deny(absl::UnauthenticatedError(
                      "the bearer token is not valid for this controller"),
                  ctx, method);
    }
    if (r > have) {
      have = r;
      who = "bearer token";
    }
  }
  if (have == Role::kNone) {
    if (!identity.empty()) {
      return Deny(absl::PermissionDeniedError(
                      absl::StrCat("certificate \"", absl::CHexEscape(identity),
                                   "\" is not on the controller's admin list "
                                   "(--admin-identities)")),
                  ctx, method);
    }
    return Deny(absl::UnauthenticatedError(
                    token_given ? "the bearer token is not valid"
                                : "the admin API needs a client certificate "
                                  "on the admin list or a bearer token "
                                  "(shutterctl --token-file)"),
                ctx, method);
  }
  if (have < role) {
    return Deny(absl::PermissionDeniedError(
                    absl::StrCat(method, " needs the ", RoleName(role),
                                 " role; ", who, " has ", RoleName(have))),
                ctx, method);
  }
  return absl::OkStatus();
}

void Authorizer::ReplaceTokens(std::map<std::string, Role> tokens) {
  absl::MutexLock l(&mu_);
  tokens_ = std::move(tokens);
}

absl::Status Authorizer::CheckNode(const grpc::ServerContextBase& ctx,
                                   absl::string_view node_id,
                                   absl::string_view method) const {
  if (!options_.enabled) return absl::OkStatus();
  const std::string identity = PeerIdentity(ctx);
  if (identity.empty()) {
    return Deny(absl::UnauthenticatedError(
                    "nodes must present a certificate (mutual TLS)"),
                ctx, method);
  }
  if (identity != node_id || options_.identities.count(identity) > 0) {
    return Deny(absl::PermissionDeniedError(absl::StrCat(
                    "certificate \"", absl::CHexEscape(identity),
                    "\" may not act as node \"", absl::CHexEscape(node_id),
                    "\" (a node's certificate names its node id)")),
                ctx, method);
  }
  return absl::OkStatus();
}

absl::Status Authorizer::CheckController(const grpc::ServerContextBase& ctx,
                                         absl::string_view method) const {
  if (!options_.enabled) return absl::OkStatus();
  const std::string identity = PeerIdentity(ctx);
  if (identity.empty()) {
    return Deny(absl::UnauthenticatedError(
                    "only the controller may call NodeService (mutual TLS)"),
                ctx, method);
  }
  if (identity != options_.controller_identity) {
    return Deny(absl::PermissionDeniedError(
                    absl::StrCat("certificate \"", absl::CHexEscape(identity),
                                 "\" is not the controller's (\"",
                                 options_.controller_identity, "\")")),
                ctx, method);
  }
  return absl::OkStatus();
}

absl::Status Authorizer::CheckAnyPeer(const grpc::ServerContextBase& ctx,
                                      absl::string_view method) const {
  if (!options_.enabled || !PeerIdentity(ctx).empty()) {
    return absl::OkStatus();
  }
  return Deny(absl::UnauthenticatedError(
                  "the data plane needs a client certificate (mutual TLS)"),
              ctx, method);
}

absl::StatusOr<std::map<std::string, Role>> LoadTokenFile(
    const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("--admin-token-file: cannot read ", path));
  }
  std::map<std::string, Role> out;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    absl::string_view l = absl::StripAsciiWhitespace(line);
    if (l.empty() || l[0] == '#') continue;
    std::vector<absl::string_view> parts =
        absl::StrSplit(l, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (parts.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("--admin-token-file: ", path, " line ", n,
                       ": expected \"<viewer|operator> <token>\""));
    }
    auto role = ParseRole(parts[0]);
    if (!role.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--admin-token-file: ", path, " line ", n, ": ",
                       role.status().message()));
    }
    if (parts[1].size() < 16) {
      return absl::InvalidArgumentError(
          absl::StrCat("--admin-token-file: ", path, " line ", n,
                       ": tokens must be at least 16 characters"));
    }
    out[std::string(parts[1])] = *role;
  }
  return out;
}

absl::StatusOr<std::map<std::string, Role>> ParseIdentityRoles(
    absl::string_view spec) {
  std::map<std::string, Role> out;
  for (absl::string_view entry : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    entry = absl::StripAsciiWhitespace(entry);
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(entry, absl::MaxSplits('=', 1));
    auto role = ParseRole(kv.second);
    if (kv.first.empty() || !role.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--admin-identities: \"", absl::CHexEscape(entry),
          "\" is not <certificate common name>=<viewer|operator>"));
    }
    out[std::string(kv.first)] = *role;
  }
  return out;
}

}  // namespace shutter
