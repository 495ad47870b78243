#ifndef SHUTTER_CONTROLLER_CONTROLLER_H_
#define SHUTTER_CONTROLLER_CONTROLLER_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "controller/controller_options.h"

namespace shutter::controller {

// The whole controller daemon: repository, job store, node registry, node
// limits, the job engine and its kinds, maintenance (retention, GC),
// schedules, metrics and the gRPC services. Start() brings the parts up in
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

  // SIGHUP (systemctl reload): re-reads the admin token file; a file that
  // cannot be read keeps the old tokens (logged).
  void Reload();

  // The port the APIs are served on (after Start).
  int port() const;
  // True once the listener watchdog found the gRPC listener dead (it then
  // raised the shutdown signal; the daemon must exit 1).
  bool listener_dead() const { return listener_dead_; }

  // Stops serving, then stops every part in the reverse order of Start.
  // Idempotent.
  void Shutdown();

 private:
  struct Parts;
  const ControllerOptions options_;
  std::unique_ptr<Parts> parts_;
  std::atomic<bool> listener_dead_{false};
};

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_CONTROLLER_H_
