// shutter-node: hosts partitions and takes their checkpoints on request.
#include <cstdio>

#include "common/clock.h"
#include "common/daemon.h"
#include "common/rpc.h"
#include "node/checkpoint_taker.h"
#include "node/heartbeater.h"
#include "node/node_host.h"
#include "node/node_options.h"
#include "node/node_services.h"
#include "snapshot/repository.h"
#include "spdlog/spdlog.h"

namespace {

int Fail(const absl::Status& s, int code) {
  std::fprintf(stderr, "shutter-node: %s\n", std::string(s.message()).c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace shutter;  // NOLINT
  daemon::BlockShutdownSignals();
  bool help = false;
  std::string help_text;
  auto opts = node::ParseNodeOptions(argc, argv, &help, &help_text);
  if (!opts.ok()) return Fail(opts.status(), 2);
  if (help) {
    std::fputs(help_text.c_str(), stdout);
    return 0;
  }
  if (auto s = daemon::InitLogging(opts->log_level, opts->node_id); !s.ok()) {
    return Fail(s, 2);
  }

  snapshot::RepositoryOptions repo_opts;
  repo_opts.stream_bytes_per_second =
      static_cast<uint64_t>(opts->publish_stream_mibps * 1048576.0);
  repo_opts.total_bytes_per_second =
      static_cast<uint64_t>(opts->publish_bandwidth_mibps * 1048576.0);
  auto repo = snapshot::OpenRepository(opts->repository, repo_opts);
  if (!repo.ok()) return Fail(repo.status(), 2);
  auto host = node::NodeHost::Open(
      {opts->data_dir + "", opts->partitions, opts->leader_for});
  if (!host.ok()) return Fail(host.status(), 1);
  node::CheckpointTaker::Options topts;
  topts.node_id = opts->node_id;
  topts.staging_dir = opts->data_dir + "/staging";
  topts.data_dir = opts->data_dir;
  topts.capacity = opts->checkpoint_capacity;
  topts.min_free_bytes = static_cast<uint64_t>(opts->min_free_mib) << 20;
  auto taker = node::CheckpointTaker::Create(topts, host->get(), repo->get(),
                                             Clock::Real());
  if (!taker.ok()) return Fail(taker.status(), 1);

  node::NodeServiceImpl node_service(taker->get(), host->get());
  node::PartitionDataImpl data_service(host->get());
  auto server = StartGrpcServer(opts->listen, {&node_service, &data_service});
  if (!server.ok()) return Fail(server.status(), 1);
  std::string advertise = opts->advertise.empty()
                              ? WithPort(opts->listen, server->port)
                              : opts->advertise;
  spdlog::info(
      "node {} serving on port {} (advertised as {}), {} partitions, "
      "capacity {}, repository {}",
      opts->node_id, server->port, advertise, opts->partitions.size(),
      opts->checkpoint_capacity, (*repo)->Describe());
  if (auto s = daemon::WritePortFile(opts->port_file, server->port); !s.ok()) {
    return Fail(s, 1);
  }

  node::Heartbeater heartbeater(
      {opts->node_id, advertise, opts->controller, opts->checkpoint_capacity,
       absl::Milliseconds(opts->heartbeat_interval_ms)},
      host->get());
  heartbeater.Start();
  daemon::NotifySystemd("READY=1");

  int sig = daemon::WaitForShutdownSignal();
  spdlog::info("signal {}: shutting down", sig);
  daemon::NotifySystemd("STOPPING=1");
  heartbeater.Stop();
  // Stop accepting calls; give in-flight checkpoints a grace period, then
  // cancel what remains.
  server->server->Shutdown(std::chrono::system_clock::now() +
                           std::chrono::seconds(10));
  (*taker)->Shutdown();
  taker->reset();
  host->reset();  // closes every RocksDB
  spdlog::info("stopped");
  return 0;
}
