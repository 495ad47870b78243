// shutter-controller: tracks nodes, serves the admin API, runs jobs.
// Everything but flags and signals is the Controller's (controller.h).
#include <cstdio>
#include <string>

#include "common/daemon.h"
#include "common/rpc.h"
#include "controller/controller.h"
#include "controller/controller_options.h"
#include "spdlog/spdlog.h"

namespace {
int Fail(const absl::Status& s, int code) {
  std::fprintf(stderr, "shutter-controller: %s\n",
               std::string(s.message()).c_str());
  return code;
}
}  // namespace

int main(int argc, char** argv) {
  using namespace shutter;  // NOLINT
  daemon::BlockShutdownSignals();
  bool help = false;
  std::string help_text;
  auto opts = controller::ParseControllerOptions(argc, argv, &help, &help_text);
  if (!opts.ok()) return Fail(opts.status(), 2);
  if (help) {
    std::fputs(help_text.c_str(), stdout);
    return 0;
  }
  if (auto s = daemon::InitLogging(opts->log_level, "controller"); !s.ok()) {
    return Fail(s, 2);
  }
  RouteGrpcLogsToSpdlog();
  if (!opts->import_job_store.empty()) {
    auto done = controller::Controller::ImportEmbeddedJobStore(*opts);
    if (!done.ok()) return Fail(done.status(), 1);
    std::printf("%s\n", done->c_str());
    return 0;
  }
  controller::Controller controller(*std::move(opts));
  if (auto s = controller.Start(); !s.ok()) {
    controller.Shutdown();
    return Fail(s, daemon::ExitCodeOf(s));
  }
  daemon::NotifySystemd("READY=1");
  const int sig = daemon::WaitForShutdownSignal([&] { controller.Reload(); });
  if (!controller.listener_dead())
    spdlog::info("signal {}: shutting down", sig);
  daemon::NotifySystemd("STOPPING=1");
  controller.Shutdown();
  spdlog::info("stopped");
  if (controller.listener_dead()) {
    return Fail(absl::UnavailableError(
                    "the gRPC listener stopped accepting connections"),
                1);
  }
  return 0;
}
