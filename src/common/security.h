#ifndef SHUTTER_COMMON_SECURITY_H_
#define SHUTTER_COMMON_SECURITY_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace grpc {
class ChannelCredentials;
class ServerCredentials;
class ServerContextBase;
}  // namespace grpc

// Transport security and authorization of every gRPC surface.
namespace shutter {

// TLS material of a daemon or client: PEM files, or plaintext when
// explicitly asked.
struct TlsOptions {
  std::string cert;  // this process' certificate chain
  std::string key;   // its private key
  std::string ca;    // CA bundle that peers' certificates must chain to
  bool insecure = false;
  // How often the files are checked for changes (rotation without a
  // restart); a change takes effect for new connections.
  int reload_seconds = 60;
};

// For daemons: exactly one of --insecure, or all of cert, key and CA.
// The files are read and checked now, so a bad setup fails at start with
// one line instead of at the first handshake: each must be readable PEM,
// the key must match the certificate, and the certificate must be valid
// now (not expired, not yet valid). INVALID_ARGUMENT naming the flag.
absl::Status CheckDaemonTls(const TlsOptions& options);
// For clients (shutterctl): TLS when a CA is given (a cert and key are
// then optional, both or neither), plaintext otherwise. Same checks.
absl::Status CheckClientTls(const TlsOptions& options);

// The common name of a PEM certificate file (its identity).
absl::StatusOr<std::string> CertificateCommonName(const std::string& path);

// Server credentials: TLS with the files watched for changes, asking
// clients for a certificate and verifying it against the CA when one is
// sent (the authorizer decides what a call without one may do); insecure
// if options.insecure.
std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(
    const TlsOptions& options);
// Channel credentials: TLS verifying the server against the CA (the
// server's certificate must name the host or IP dialled), presenting the
// cert and key if given; insecure if options.insecure or no CA.
std::shared_ptr<grpc::ChannelCredentials> MakeChannelCredentials(
    const TlsOptions& options);

// SetTransportSecurity (common/rpc.h) from `options`: servers and
// channels as above; the listener self-check connects with TLS but does
// not verify the server's name (it dials loopback, which a production
// certificate need not name).
void ConfigureTransportSecurity(const TlsOptions& options);

// What a caller may do. Ordered: each role may do what the ones below it
// may. kNode and kController are separate, not ordered with the others.
enum class Role { kNone, kViewer, kOperator };

// Decides who may call what, per call, from the peer's verified TLS
// certificate (its common name) and an optional bearer token
// ("authorization: Bearer <token>" metadata). Disabled (everything
// allowed) when the daemon runs with --insecure. Denials are
// UNAUTHENTICATED (no usable credential) or PERMISSION_DENIED (known, but
// not allowed), are logged with the peer and method, and are counted.
// Thread-safe after construction.
class Authorizer {
 public:
  struct Options {
    bool enabled = false;
    // Admin API: certificate common names and bearer tokens, with roles.
    std::map<std::string, Role> identities;
    std::map<std::string, Role> tokens;
    // NodeService: the controller's certificate common name.
    std::string controller_identity = "shutter-controller";
  };

  explicit Authorizer(Options options)
      : tokens_(std::move(options.tokens)), options_(std::move(options)) {}
  // Everything allowed (plaintext, tests).
  static std::shared_ptr<Authorizer> AllowAll();

  // Admin calls: the caller needs `role` (viewer: read-only calls;
  // operator: the rest).
  absl::Status CheckAdmin(const grpc::ServerContextBase& ctx, Role role,
                          absl::string_view method) const;
  // ControllerService: the caller's certificate must name `node_id`.
  absl::Status CheckNode(const grpc::ServerContextBase& ctx,
                         absl::string_view node_id,
                         absl::string_view method) const;
  // NodeService: the caller's certificate must be the controller's.
  absl::Status CheckController(const grpc::ServerContextBase& ctx,
                               absl::string_view method) const;
  // Data plane: any caller with a verified certificate.
  absl::Status CheckAnyPeer(const grpc::ServerContextBase& ctx,
                            absl::string_view method) const;

  // The role a bearer token grants (kNone if unknown; kOperator for any
  // token when authorization is disabled). For surfaces that log people in
  // with a token (the console) and then call the admin API with it.
  Role RoleOfToken(absl::string_view token) const ABSL_LOCKS_EXCLUDED(mu_);

  // The role a verified certificate common name has on the admin list
  // (kNone if not on it; kOperator when authorization is disabled).
  Role RoleOfIdentity(absl::string_view common_name) const;

  // Tokens minted by this process for a surface that authenticated a
  // person itself (the console, for a browser's client certificate) so
  // that its admin calls carry that person's role. Never read from a
  // file, not replaced by ReplaceTokens.
  void AddSessionToken(std::string token, Role role) ABSL_LOCKS_EXCLUDED(mu_);
  void RemoveSessionToken(const std::string& token) ABSL_LOCKS_EXCLUDED(mu_);

  // Replaces the bearer tokens (a reloaded token file).
  void ReplaceTokens(std::map<std::string, Role> tokens)
      ABSL_LOCKS_EXCLUDED(mu_);

  bool enabled() const { return options_.enabled; }
  uint64_t denials() const { return denials_.load(); }

  // The verified certificate common name of the peer, or "".
  static std::string PeerIdentity(const grpc::ServerContextBase& ctx);

 private:
  absl::Status Deny(absl::Status s, const grpc::ServerContextBase& ctx,
                    absl::string_view method) const;

  mutable absl::Mutex mu_;
  // The tokens (moved out of the options: ReplaceTokens changes them).
  std::map<std::string, Role> tokens_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Role> session_tokens_ ABSL_GUARDED_BY(mu_);
  // A bearer token's role, from either map.
  Role TokenRoleLocked(absl::string_view token) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  const Options options_;
  mutable std::atomic<uint64_t> denials_{0};
};

// Parses a token file: one "<role> <token>" per line (role: viewer or
// operator; '#' starts a comment; tokens of at least 16 characters).
// INVALID_ARGUMENT naming the line.
absl::StatusOr<std::map<std::string, Role>> LoadTokenFile(
    const std::string& path);
// Parses "alice=operator,bob=viewer". INVALID_ARGUMENT naming the entry.
absl::StatusOr<std::map<std::string, Role>> ParseIdentityRoles(
    absl::string_view spec);

}  // namespace shutter

#endif  // SHUTTER_COMMON_SECURITY_H_
