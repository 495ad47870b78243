#ifndef SHUTTER_COMMON_DAEMON_H_
#define SHUTTER_COMMON_DAEMON_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

// Process-level helpers shared by the daemons' main() functions.
namespace shutter::daemon {

// Sets up spdlog's default logger at `level` ("trace".."off").
// INVALID_ARGUMENT for an unknown level.
absl::Status InitLogging(const std::string& level, const std::string& name);

// Blocks SIGTERM and SIGINT in the calling thread and every thread created
// after it, and turns off Abseil's mutex deadlock detection (costly at
// scale). Call first thing in main(), before any thread starts.
void BlockShutdownSignals();

// Waits until SIGTERM or SIGINT arrives; returns the signal number. A
// SIGHUP meanwhile calls `on_reload` (on this thread) and waits on; it
// never ends the daemon. Requires BlockShutdownSignals() to have been
// called (it blocks SIGHUP too).
int WaitForShutdownSignal(const std::function<void()>& on_reload = nullptr);

// Makes WaitForShutdownSignal() return (with SIGTERM), e.g. when another
// thread finds the daemon cannot go on. Async-signal-safe.
void RaiseShutdownSignal();

// Tells systemd about a state change ("READY=1", "STOPPING=1"); no-op when
// not run under systemd or built without libsystemd.
void NotifySystemd(const char* state);

// The service manager's watchdog interval (WatchdogSec=, passed as
// WATCHDOG_USEC), or zero when there is none. A daemon must then send
// "WATCHDOG=1" more often than this, or it is killed and restarted.
absl::Duration SystemdWatchdogInterval();

// Returns the heap memory freed since the last call to the operating
// system (glibc's malloc_trim): after a burst of allocations - a large
// job's requests and answers, spread over gRPC's threads and so over
// glibc's per-thread arenas - the freed pages otherwise stay resident.
// About 0.1 s for 1 GiB freed in small pieces over 8 arenas (measured on
// the 2-core development VM); call off latency-sensitive paths.
void ReleaseFreedMemory();

// A daemon's start-up error that is a problem of its configuration (a bad
// option, a busy port, an unusable directory or repository): the daemon
// exits 2, which its unit does not restart (RestartPreventExitStatus=2).
// Other errors exit 1. The status' code and message are kept.
absl::Status ConfigError(absl::Status status);
// `prefix` + ": " + the message, as a ConfigError.
absl::Status ConfigError(absl::string_view prefix, const absl::Status& status);
// The exit code a start-up error calls for: 2 for a ConfigError, else 1.
int ExitCodeOf(const absl::Status& status);

// Writes `port` to `path` crash-safely (no-op if path is empty).
absl::Status WritePortFile(const std::string& path, int port);

}  // namespace shutter::daemon

#endif  // SHUTTER_COMMON_DAEMON_H_
