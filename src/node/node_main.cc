// shutter-node: hosts partitions and takes their checkpoints on request.
//
// Start-up order matters: nothing durable changes (no epoch is raised)
// until the node serves its port and the controller has accepted it, so a
// start that fails (busy port, refused identity, wrong repository) leaves
// the node's partitions exactly as they were.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/daemon.h"
#include "common/fs.h"
#include "common/metrics.h"
#include "common/rpc.h"
#include "common/security.h"
#include "node/bootstrap.h"
#include "node/checkpoint_taker.h"
#include "node/heartbeater.h"
#include "node/load_monitor.h"
#include "node/node_host.h"
#include "node/node_instance.h"
#include "node/node_metrics.h"
#include "node/node_options.h"
#include "node/node_services.h"
#include "node/partition_restorer.h"
#include "snapshot/file_hash_cache.h"
#include "snapshot/repository.h"
#include "spdlog/spdlog.h"

namespace {

int Fail(absl::string_view msg, int code) {
  std::fprintf(stderr, "shutter-node: %s\n", std::string(msg).c_str());
  return code;
}

// Fault injection for the restore fault tests, from the environment; never
// set in production. The points are PartitionRestorer::Options::fault's.
//   SHUTTER_TEST_KILL_AT=<point>: the process kills itself at <point>.
//   SHUTTER_TEST_HOLD_AT=<point>:<n>:<file>: the first <n> restores pass
//     <point>; later ones wait there until <file> exists (at most 5 min),
//     so a test can cancel while some partitions are swapped and others
//     are not, whatever the machine's speed.
std::function<void(const char*)> TestFaultHook() {
  const char* kill = std::getenv("SHUTTER_TEST_KILL_AT");
  if (kill != nullptr && *kill != '\0') {
    return [p = std::string(kill)](const char* at) {
      if (p != at) return;
      spdlog::warn("SHUTTER_TEST_KILL_AT={}: killing this node", p);
      spdlog::default_logger()->flush();
      ::raise(SIGKILL);
    };
  }
  const char* hold = std::getenv("SHUTTER_TEST_HOLD_AT");
  if (hold == nullptr || *hold == '\0') return nullptr;
  std::vector<std::string> parts =
      absl::StrSplit(hold, absl::MaxSplits(':', 2));
  int pass = 0;
  if (parts.size() != 3 || !absl::SimpleAtoi(parts[1], &pass)) {
    spdlog::error("SHUTTER_TEST_HOLD_AT={}: want <point>:<n>:<file>", hold);
    return nullptr;
  }
  auto passed = std::make_shared<std::atomic<int>>(0);
  return [point = parts[0], pass, file = parts[2], passed](const char* at) {
    if (point != at || passed->fetch_add(1) < pass) return;
    spdlog::warn("SHUTTER_TEST_HOLD_AT: holding at {} until {} exists", point,
                 file);
    const absl::Time deadline = absl::Now() + absl::Minutes(5);
    while (!shutter::fs::Exists(file) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
    }
  };
}

int Fail(const absl::Status& s, int code) { return Fail(s.message(), code); }

// The settle time for checkpoints in flight at SIGTERM.
constexpr absl::Duration kShutdownGrace = absl::Seconds(10);

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
  RouteGrpcLogsToSpdlog();
  // Transport security first: every server and channel uses it.
  if (auto s = CheckDaemonTls(opts->tls); !s.ok()) return Fail(s, 2);
  ConfigureTransportSecurity(opts->tls);
  Authorizer::Options authz_opts;
  authz_opts.enabled = !opts->tls.insecure;
  authz_opts.controller_identity = opts->controller_identity;
  auto authz = std::make_shared<const Authorizer>(std::move(authz_opts));
  const uint64_t max_files = RaiseOpenFileLimit();
  if (auto s = fs::CheckWritableDir(opts->data_dir); !s.ok()) {
    return Fail(absl::StrCat("--data-dir: ", s.message()), 2);
  }
  auto instance = node::StartNodeInstance(opts->data_dir, opts->node_id);
  if (!instance.ok()) {
    return Fail(absl::StrCat("--data-dir: ", instance.status().message()), 2);
  }

  snapshot::RepositoryOptions repo_opts;
  repo_opts.create_if_missing = false;  // the controller creates it
  repo_opts.stream_bytes_per_second =
      static_cast<uint64_t>(opts->publish_stream_mibps * 1048576.0);
  repo_opts.total_bytes_per_second =
      static_cast<uint64_t>(opts->publish_bandwidth_mibps * 1048576.0);
  snapshot::ApplyS3Flags(opts->s3, &repo_opts);
  // SHA-256 of SST files already published: unchanged files are neither
  // re-read nor re-uploaded by the next snapshot.
  auto hash_cache = snapshot::FileHashCache::Open(
      opts->hash_cache ? opts->data_dir + "/published-hashes" : "");
  if (!hash_cache.ok()) return Fail(hash_cache.status(), 1);
  if (opts->hash_cache) repo_opts.hash_cache = hash_cache->get();
  repo_opts.publisher_instance =
      absl::StrCat(instance->instance_id, "/", instance->start_count);
  auto repo = snapshot::OpenRepository(opts->repository, repo_opts);
  if (!repo.ok()) {
    return Fail(absl::StrCat("--repository: ", repo.status().message()), 2);
  }
  node::ReleaseDeadPublishLocks(**repo, opts->node_id, *instance);
  if (!opts->bootstrap_from.empty()) {
    node::BootstrapOptions bo;
    bo.data_dir = opts->data_dir;
    bo.partitions = opts->partitions;
    bo.from = opts->bootstrap_from;
    bo.min_applied_index = opts->bootstrap_min_applied_index;
    auto boot = node::BootstrapPartitions(bo, **repo);
    if (!boot.ok()) {
      const bool config = absl::IsNotFound(boot.status()) ||
                          absl::IsFailedPrecondition(boot.status()) ||
                          absl::IsInvalidArgument(boot.status());
      return Fail(absl::StrCat("--bootstrap-from: ", boot.status().message()),
                  config ? 2 : 1);
    }
    if (!boot->restored.empty()) {
      spdlog::info(
          "bootstrapped {} partition(s) from snapshot {} ({} bytes); "
          "{} had a local store",
          boot->restored.size(), boot->snapshot_id, boot->bytes,
          boot->kept.size());
    }
  }
  auto host = node::NodeHost::Open(
      {opts->data_dir, opts->partitions, opts->leader_for});
  if (!host.ok()) return Fail(host.status(), 1);
  node::CheckpointTaker::Options topts;
  topts.node_id = opts->node_id;
  topts.instance_id = instance->instance_id;
  topts.staging_dir = opts->data_dir + "/staging";
  topts.data_dir = opts->data_dir;
  topts.capacity = opts->checkpoint_capacity;
  topts.min_free_bytes = static_cast<uint64_t>(opts->min_free_mib) << 20;
  topts.io_class = *ParseIoClass(opts->snapshot_io_class);  // checked
  topts.nice = opts->snapshot_nice;
  auto taker = node::CheckpointTaker::Create(topts, host->get(), repo->get(),
                                             Clock::Real());
  if (!taker.ok()) return Fail(taker.status(), 1);

  node::PartitionRestorer::Options ropts;
  ropts.node_id = opts->node_id;
  ropts.instance_id = instance->instance_id;
  ropts.capacity = opts->checkpoint_capacity;
  ropts.io_class = topts.io_class;
  ropts.nice = topts.nice;
  ropts.check_serving = [t = taker->get()] { return t->CheckServing(); };
  ropts.fault = TestFaultHook();
  auto restorer = node::PartitionRestorer::Create(ropts, host->get(),
                                                  repo->get(), Clock::Real());
  if (!restorer.ok()) return Fail(restorer.status(), 1);

  // Metrics: collected always, served with --metrics-listen.
  metrics::Registry metrics;
  node::ExportNodeState(&metrics, opts->data_dir, taker->get(), restorer->get(),
                        authz.get(), &(*host)->write_stalls());
  if (auto s = metrics::StartDaemonMetrics(&metrics, opts->metrics_listen);
      !s.ok()) {
    return Fail(absl::StrCat("--metrics-listen: ", s.message()), 2);
  }

  // 1. Serve (the taker refuses checkpoints until step 3).
  node::NodeServiceImpl node_service(taker->get(), host->get(), restorer->get(),
                                     authz, opts->enable_data_plane, &metrics);
  node::PartitionDataImpl data_service(host->get(), authz, &metrics);
  std::vector<grpc::Service*> services = {&node_service};
  if (opts->enable_data_plane) services.push_back(&data_service);
  auto server = StartGrpcServer(opts->listen, services);
  if (!server.ok()) {
    return Fail(absl::StrCat("--listen: ", server.status().message()), 2);
  }
  if (opts->tls.insecure) {
    spdlog::warn("--insecure: NodeService{} plaintext and unauthenticated",
                 opts->enable_data_plane ? " and the data plane are" : " is");
  }
  std::string advertise = opts->advertise.empty()
                              ? WithPort(opts->listen, server->port)
                              : opts->advertise;

  // 2. Register: the controller checks the incarnation and the repository.
  absl::Mutex fatal_mu;
  std::optional<absl::Status> fatal;
  node::Heartbeater::Options hopts;
  hopts.node_id = opts->node_id;
  hopts.instance = *instance;
  hopts.advertise_address = advertise;
  hopts.controller_address = opts->controller;
  hopts.checkpoint_capacity = opts->checkpoint_capacity;
  hopts.interval = absl::Milliseconds(opts->heartbeat_interval_ms);
  hopts.on_fatal = [&](const absl::Status& s) {
    {
      absl::MutexLock l(&fatal_mu);
      fatal = s;
    }
    daemon::RaiseShutdownSignal();
  };
  node::LoadMonitor::Options lopts;
  lopts.data_dir = opts->data_dir;
  lopts.disk_device = opts->disk_device;
  lopts.writes = (*host)->write_latency();
  lopts.stalls = &(*host)->write_stalls();
  lopts.checkpoints = (*taker)->durations();
  lopts.activity = [t = taker->get(), r = restorer->get()] {
    const auto ts = t->GetStats();
    const auto rs = r->GetStats();
    return node::LoadMonitor::Activity{
        ts.in_flight + rs.in_flight,
        ts.published + ts.failed + rs.restored + rs.failed};
  };
  node::LoadMonitor load(lopts, Clock::Real());
  hopts.load = [&load] { return load.Sample(); };
  node::Heartbeater heartbeater(hopts, host->get(), repo->get());
  absl::Status registered = heartbeater.Register(absl::Seconds(2));
  if (node::Heartbeater::IsFatal(registered)) {
    StopGrpcServer(*server, absl::ZeroDuration());
    return Fail(absl::StrCat("the controller refused this node: ",
                             registered.message()),
                2);
  }
  if (!registered.ok()) {
    spdlog::warn(
        "controller {} not reachable yet ({}); starting anyway and "
        "registering when it is",
        opts->controller, std::string(registered.message()));
  }

  // 3. Lead, then take checkpoints.
  if (auto s = (*host)->TakeLeadership(); !s.ok()) {
    StopGrpcServer(*server, absl::ZeroDuration());
    return Fail(s, 1);
  }
  (*taker)->SetServing(true);
  heartbeater.Start();
  std::atomic<bool> listener_dead{false};
  std::unique_ptr<ListenerWatchdog> watchdog = WatchListener(
      opts->listen, *server, absl::Milliseconds(opts->listener_check_ms),
      &listener_dead);
  spdlog::info(
      "node {} (incarnation {}, start {}) serving on port {} (advertised as "
      "{}), {} partitions, capacity {}, repository {}, up to {} open files",
      opts->node_id, instance->instance_id, instance->start_count, server->port,
      advertise, opts->partitions.size(), opts->checkpoint_capacity,
      (*repo)->Describe(), max_files);
  if (auto s = daemon::WritePortFile(opts->port_file, server->port); !s.ok()) {
    return Fail(s, 1);
  }
  daemon::NotifySystemd("READY=1");

  int sig = daemon::WaitForShutdownSignal();
  std::optional<absl::Status> why;
  {
    absl::MutexLock l(&fatal_mu);
    why = fatal;
  }
  if (listener_dead) {
    server->server->GetHealthCheckService()->SetServingStatus(false);
  } else if (!why) {
    spdlog::info("signal {}: shutting down", sig);
  }
  daemon::NotifySystemd("STOPPING=1");
  metrics.StopServing();  // its callbacks read what is torn down next
  watchdog.reset();
  heartbeater.Stop();
  // Take no new checkpoints; give those in flight a grace period, then
  // cancel what remains. Idle connections are not waited for.
  (*taker)->Drain();
  if (!why && !listener_dead) {
    // Release this incarnation at the controller now (a replaced disk's
    // new incarnation is then accepted at once).
    absl::Status left = heartbeater.SendLeaving(absl::Seconds(1));
    if (!left.ok()) {
      spdlog::warn("could not tell controller {} that this node is leaving: {}",
                   opts->controller, left.ToString());
    }
  }
  StopGrpcServer(*server, why ? absl::ZeroDuration() : kShutdownGrace);
  (*taker)->Shutdown();
  (*restorer)->Shutdown();
  taker->reset();
  restorer->reset();
  host->reset();  // closes every RocksDB
  spdlog::info("stopped");
  if (listener_dead) {
    return Fail("the gRPC listener stopped accepting connections", 1);
  }
  if (why) {
    return Fail(
        absl::StrCat("the controller refused this node: ", why->message()), 2);
  }
  return 0;
}
