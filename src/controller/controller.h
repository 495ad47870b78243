#ifndef SHUTTER_CONTROLLER_CONTROLLER_H_
#define SHUTTER_CONTROLLER_CONTROLLER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "controller/controller_options.h"
#include "shutter/v1/admin.pb.h"

namespace shutter::controller {

// The whole controller daemon: repository, job store, node registry, node
// limits, the job engine and its kinds, maintenance (retention, GC),
// schedules, metrics and the gRPC services. With --job-store etcd://, one
// of several controllers leads (LeaderElection): the parts that act on
// jobs and nodes (a Term) exist only while it does, and a follower's
// services send callers to the leader. Start() brings the parts up in
// dependency order; Shutdown() takes them down in the reverse order, so no
// part outlives what it uses and no callback reaches a part already gone.
// main() parses flags, runs one Controller and waits for a signal; tests
// may run one in-process.
//
// Not thread-safe: Start, Reload and Shutdown are called from one thread
// (main's); the parts are thread-safe themselves.
class Controller {
 public:
  explicit Controller(ControllerOptions options);
  // Shutdown().
  ~Controller();
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  // Starts every part and serves the APIs; writes the port file last. On
  // error, what was started is stopped again; errors of configuration
  // (flags, files, the repository, ports) are daemon::ConfigError (exit 2).
  absl::Status Start();

  // --import-job-store: copies the embedded job store of that data
  // directory into --job-store's etcd prefix (see ImportJobStore in
  // job_store_import.h); returns a line for the operator.
  static absl::StatusOr<std::string> ImportEmbeddedJobStore(
      const ControllerOptions& options);

  // SIGHUP (systemctl reload): re-reads the admin token file; a file that
  // cannot be read keeps the old tokens (logged).
  void Reload();

  // The port the APIs are served on (after Start).
  int port() const;
  // True once the listener watchdog found the gRPC listener dead (it then
  // raised the shutdown signal; the daemon must exit 1).
  bool listener_dead() const { return listener_dead_; }

  // Stops serving, then stops every part in the reverse order of Start.
  // With etcd, it resigns first so another controller leads at once.
  // Idempotent.
  void Shutdown();

 private:
  struct Parts;
  struct Term;
  // Builds a term of leadership from the job store and serves it; with
  // etcd, on the election's thread when this controller wins. `may_send`:
  // whether the term still holds (null: always).
  absl::Status StartTerm(uint64_t term, std::function<bool()> may_send);
  // Stops the leading term (calls are redirected from then on).
  void StopTerm();
  absl::StatusOr<shutter::v1::ListControllersResponse> ListControllers();
  const ControllerOptions options_;
  std::unique_ptr<Parts> parts_;
  std::atomic<bool> listener_dead_{false};
};

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_CONTROLLER_H_
