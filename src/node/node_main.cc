// shutter-node: hosts partitions and takes their checkpoints on request.
// Everything but flags and signals is the Node's (node.h).
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/daemon.h"
#include "common/rpc.h"
#include "node/node.h"
#include "node/node_options.h"
#include "spdlog/spdlog.h"

namespace {
int Fail(absl::string_view msg, int code) {
  std::fprintf(stderr, "shutter-node: %s\n", std::string(msg).c_str());
  return code;
}
}  // namespace

int main(int argc, char** argv) {
  using namespace shutter;  // NOLINT
  daemon::BlockShutdownSignals();
  bool help = false;
  std::string help_text;
  auto opts = node::ParseNodeOptions(argc, argv, &help, &help_text);
  if (!opts.ok()) return Fail(opts.status().message(), 2);
  if (help) {
    std::fputs(help_text.c_str(), stdout);
    return 0;
  }
  if (auto s = daemon::InitLogging(opts->log_level, opts->node_id); !s.ok()) {
    return Fail(s.message(), 2);
  }
  RouteGrpcLogsToSpdlog();
  node::Node node(*std::move(opts));
  if (auto s = node.Start(); !s.ok()) {
    node.Shutdown();
    return Fail(s.message(), daemon::ExitCodeOf(s));
  }
  daemon::NotifySystemd("READY=1");
  const int sig = daemon::WaitForShutdownSignal();
  const std::optional<absl::Status> refused = node.fatal();
  if (!node.listener_dead() && !refused) {
    spdlog::info("signal {}: shutting down", sig);
  }
  daemon::NotifySystemd("STOPPING=1");
  node.Shutdown();
  spdlog::info("stopped");
  if (node.listener_dead()) {
    return Fail("the gRPC listener stopped accepting connections", 1);
  }
  if (refused) {
    return Fail(
        absl::StrCat("the controller refused this node: ", refused->message()),
        2);
  }
  return 0;
}
