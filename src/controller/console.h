#ifndef SHUTTER_CONTROLLER_CONSOLE_H_
#define SHUTTER_CONTROLLER_CONSOLE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/security.h"

namespace grpc {
class Channel;
}  // namespace grpc

namespace shutter::controller {

// The operator console: a web UI and the JSON views it reads, served by
// the controller on its own HTTP(S) listener (--console-listen).
//
// Every view is built from this controller's admin API, called through
// `admin` (an in-process channel) with the bearer token the person logged
// in with, so the admin API's roles apply unchanged: a viewer token sees
// everything, actions need an operator token. With authorization disabled
// (--insecure) nobody logs in and everything is allowed, as on the API.
//
// Sessions: POST /login with a token sets an HttpOnly, SameSite=Strict
// session cookie (Secure over TLS); nothing but the login form and the
// static assets is served without one. Over TLS a browser may instead
// present a client certificate that verifies against the controller's CA
// and whose common name is on --admin-identities: it is then logged in
// with that identity's role for as long as it presents it (its admin
// calls carry a token this process minted for the identity). After
// kMaxLoginFailures refused logins from one address within
// kLoginFailureWindow, that address gets 429 until the window passes. Every
// POST other than /login must carry the session's CSRF token in the
// X-Shutter-CSRF header (a cross-site form cannot set it). Scripts may instead
// send "Authorization: Bearer <token>" on GET /api/v1/... (no cookie, no CSRF
// needed for reads).
//
// JSON views (GET unless said; documented in docs/operations.md):
//   /api/v1/session                    who is logged in, role, CSRF token
//   /api/v1/overview                   nodes, partitions, jobs, schedules
//   /api/v1/jobs?type=&state=&label=&limit=
//   /api/v1/jobs/<id>?page_size=&page_token=&state=
//   /api/v1/jobs/<id>/timeline         every task: node, start, duration
//   /api/v1/nodes, /api/v1/schedules, /api/v1/repository,
//   /api/v1/controllers
//   POST /api/v1/snapshots             create a snapshot {"label": ...}
//   POST /api/v1/restores              a RestoreSnapshotRequest (dry_run
//                                      for the plan)
//   POST /api/v1/jobs/<id>/cancel
// Admin API errors keep their meaning: 401/403 for credentials, 404, 400
// or 409 for bad input, 503 with "leader" on a follower or without etcd.
//
// Thread-safe; civetweb serves requests on its own threads.
class Console {
 public:
  struct Options {
    // host:port; port 0 picks a free port (see port()).
    std::string listen;
    // The controller's TLS files: the console serves HTTPS with its
    // certificate and key unless insecure (read at start; a rotated
    // certificate takes a restart here, unlike on the gRPC APIs).
    TlsOptions tls;
    // A session ends this long after login.
    absl::Duration session_ttl = absl::Hours(12);
  };
  static constexpr int kMaxLoginFailures = 10;
  static constexpr absl::Duration kLoginFailureWindow = absl::Minutes(10);

  // Starts serving. UNAVAILABLE if `listen` cannot be bound.
  static absl::StatusOr<std::unique_ptr<Console>> Start(
      const Options& options, std::shared_ptr<grpc::Channel> admin,
      std::shared_ptr<Authorizer> authz);
  ~Console();

  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;

  // The bound port.
  int port() const;

  class Impl;

 private:
  explicit Console(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_CONSOLE_H_
