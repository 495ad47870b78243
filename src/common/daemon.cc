#include "common/daemon.h"

#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/fs.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

#ifdef SHUTTER_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace shutter::daemon {

absl::Status InitLogging(const std::string& level, const std::string& name) {
  spdlog::level::level_enum lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError(
        absl::StrCat("--log-level: unknown level \"", level,
                     "\" (trace, debug, info, warn, error, critical, off)"));
  }
  auto logger = spdlog::stderr_color_mt(name);
  spdlog::set_default_logger(logger);
  spdlog::set_level(lvl);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%L%$ %n[%t] %v");
  spdlog::flush_on(spdlog::level::info);
  return absl::OkStatus();
}

namespace {
sigset_t ShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}
}  // namespace

void BlockShutdownSignals() {
  // Abseil's mutex deadlock detection (on in Debian's build) records every
  // lock order in a global graph: a measurable share of the controller's
  // CPU at scale. Lock order is checked by the annotations instead.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  sigset_t set = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForShutdownSignal(const std::function<void()>& on_reload) {
  sigset_t set = ShutdownSignals();
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig != SIGHUP) return sig;
    spdlog::info("SIGHUP: reloading");
    if (on_reload) on_reload();
  }
}

void RaiseShutdownSignal() { kill(getpid(), SIGTERM); }

void NotifySystemd(const char* state) {
#ifdef SHUTTER_HAVE_SYSTEMD
  sd_notify(0, state);
#else
  (void)state;
#endif
}

absl::Duration SystemdWatchdogInterval() {
#ifdef SHUTTER_HAVE_SYSTEMD
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    return absl::Microseconds(static_cast<int64_t>(usec));
  }
#endif
  return absl::ZeroDuration();
}

absl::Status WritePortFile(const std::string& path, int port) {
  if (path.empty()) return absl::OkStatus();
  return fs::WriteFileAtomically(path, absl::StrCat(port, "\n"));
}

namespace {
constexpr char kConfigErrorUrl[] = "type.shutter.dev/shutter.v1.ConfigError";
}  // namespace

absl::Status ConfigError(absl::Status status) {
  if (!status.ok()) status.SetPayload(kConfigErrorUrl, absl::Cord("2"));
  return status;
}

absl::Status ConfigError(absl::string_view prefix, const absl::Status& status) {
  if (status.ok()) return status;
  return ConfigError(absl::Status(
      status.code(), absl::StrCat(prefix, ": ", status.message())));
}

int ExitCodeOf(const absl::Status& status) {
  if (status.ok()) return 0;
  return status.GetPayload(kConfigErrorUrl).has_value() ? 2 : 1;
}

void ReleaseFreedMemory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

}  // namespace shutter::daemon
