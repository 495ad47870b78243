// shutter-controller: tracks nodes, serves the admin API, runs snapshots.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>

#include "common/clock.h"
#include "common/daemon.h"
#include "common/fs.h"
#include "common/metrics.h"
#include "common/rpc.h"
#include "common/security.h"
#include "common/text.h"
#include "common/timer.h"
#include "controller/controller_metrics.h"
#include "controller/controller_options.h"
#include "controller/job_engine.h"
#include "controller/job_store.h"
#include "controller/kinds.h"
#include "controller/maintenance.h"
#include "controller/node_registry.h"
#include "controller/node_transport.h"
#include "controller/schedules.h"
#include "controller/services.h"
#include "snapshot/repository.h"
#include "spdlog/spdlog.h"

namespace {
int Fail(absl::string_view msg, int code) {
  std::fprintf(stderr, "shutter-controller: %s\n", std::string(msg).c_str());
  return code;
}

int Fail(const absl::Status& s, int code) { return Fail(s.message(), code); }

// How long SIGTERM waits for admin calls in flight (not for idle
// connections).
constexpr absl::Duration kShutdownGrace = absl::Seconds(5);
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
  // Transport security first: every server and channel uses it.
  if (auto s = CheckDaemonTls(opts->tls); !s.ok()) return Fail(s, 2);
  Authorizer::Options authz_opts;
  authz_opts.enabled = !opts->tls.insecure;
  if (!opts->admin_token_file.empty()) {
    auto tokens = LoadTokenFile(opts->admin_token_file);
    if (!tokens.ok()) return Fail(tokens.status(), 2);
    authz_opts.tokens = *std::move(tokens);
  }
  auto identities = ParseIdentityRoles(opts->admin_identities);
  if (!identities.ok()) return Fail(identities.status(), 2);
  authz_opts.identities = *std::move(identities);
  ConfigureTransportSecurity(opts->tls);
  const bool insecure = opts->tls.insecure;
  const bool no_admins =
      authz_opts.tokens.empty() && authz_opts.identities.empty();
  auto authz = std::make_shared<Authorizer>(std::move(authz_opts));
  const uint64_t max_files = RaiseOpenFileLimit();
  if (auto s = fs::CheckWritableDir(opts->data_dir); !s.ok()) {
    return Fail(absl::StrCat("--data-dir: ", s.message()), 2);
  }
  snapshot::RepositoryOptions repo_opts;
  snapshot::ApplyS3Flags(opts->s3, &repo_opts);
  auto repo = snapshot::OpenRepository(opts->repository, repo_opts);
  if (!repo.ok()) {
    return Fail(absl::StrCat("--repository: ", repo.status().message()), 2);
  }
  auto repo_id = (*repo)->ReadIdentity();
  if (!repo_id.ok()) {
    return Fail(absl::StrCat("--repository: ", repo_id.status().message()), 2);
  }
  auto store = controller::RocksDbJobStore::Open(opts->data_dir + "/jobs");
  if (!store.ok()) return Fail(store.status(), 1);

  controller::NodeRegistry::Options ropts;
  ropts.dead_after = absl::Milliseconds(opts->node_dead_after_ms);
  // Three missed heartbeats: the registered incarnation no longer proves
  // it is alive, and a new one of the same node id waits instead of
  // being refused (a replaced disk, a crash and restart).
  ropts.silent_after =
      std::min(absl::Milliseconds(3 * opts->heartbeat_interval_ms),
               ropts.dead_after / 2);
  ropts.repository_id = *repo_id;
  ropts.repository = (*repo)->Describe();
  controller::NodeRegistry registry(ropts, Clock::Real());
  // Metrics: collected always, served with --metrics-listen (below, once
  // every object they read exists).
  metrics::Registry metrics;
  controller::GrpcNodeTransport transport;
  ThreadTimer timer;
  controller::JobEngine::Options copts;
  copts.rpc_timeout = absl::Milliseconds(opts->rpc_timeout_ms);
  copts.dispatch_threads = opts->dispatch_threads;
  copts.max_in_flight_total = opts->max_in_flight_total;
  copts.max_attempts = opts->max_attempts;
  copts.job_timeout = absl::Seconds(opts->job_timeout_s);
  copts.metrics = &metrics;
  controller::NodeLimits::Options lopts;
  lopts.adaptive = opts->adaptive_limits;
  lopts.rule.latency_tolerance = opts->adaptive_latency_tolerance;
  lopts.rule.disk_busy_target = opts->adaptive_disk_busy_target;
  lopts.rule.cpu_busy_target = opts->adaptive_cpu_busy_target;
  controller::NodeLimits limits(lopts, store->get());
  if (auto s = limits.Load(); !s.ok()) return Fail(s, 1);
  copts.limits = &limits;
  // Retention runs after each commit, on the maintenance worker (which
  // exists once the coordinator does: the pointer is set right after).
  std::atomic<controller::Maintenance*> maintenance_ptr{nullptr};
  std::atomic<controller::ScheduleRunner*> schedules_ptr{nullptr};
  controller::KindContext kinds;
  kinds.transport = &transport;
  kinds.repo = repo->get();
  kinds.registry = &registry;
  kinds.rpc_timeout = copts.rpc_timeout;
  kinds.on_snapshot_commit = [&](const std::string& snapshot_id) {
    if (auto* s = schedules_ptr.load()) s->OnCommit(snapshot_id);
    if (auto* m = maintenance_ptr.load()) m->RequestRetention();
  };
  auto coordinator = controller::JobEngine::Create(
      copts, controller::StandardKinds(kinds), &registry, store->get(),
      repo->get(), &timer, Clock::Real());
  if (!coordinator.ok()) return Fail(coordinator.status(), 1);
  controller::Maintenance::Options mopts;
  mopts.retention.set_keep_last(opts->retention_keep_last);
  if (!opts->retention_keep_within.empty()) {
    mopts.retention.set_keep_within_seconds(absl::ToInt64Seconds(
        *ParseDurationFlag("", opts->retention_keep_within)));
  }
  for (const auto& label : opts->retention_keep_labels) {
    mopts.retention.add_keep_labels(label);
  }
  mopts.gc_grace = *ParseDurationFlag("", opts->gc_grace);
  mopts.gc_after_retention = opts->gc_after_retention;
  controller::Maintenance maintenance(mopts, coordinator->get(), repo->get(),
                                      store->get(), Clock::Real());
  maintenance.Start();
  maintenance_ptr = &maintenance;
  controller::ScheduleRunner schedules({}, coordinator->get(), &maintenance,
                                       store->get(), &timer, Clock::Real());
  if (auto s = schedules.Start(); !s.ok()) return Fail(s, 1);
  schedules_ptr = &schedules;

  controller::ExportControllerState(&metrics, &registry, &schedules,
                                    authz.get());
  controller::ExportNodeLimits(&metrics, &limits);
  if (auto s = metrics::StartDaemonMetrics(&metrics, opts->metrics_listen);
      !s.ok()) {
    return Fail(absl::StrCat("--metrics-listen: ", s.message()), 2);
  }
  controller::AdminServiceImpl admin(&registry, coordinator->get(),
                                     &maintenance, &schedules, authz);
  controller::ControllerServiceImpl node_facing(
      &registry, coordinator->get(),
      absl::Milliseconds(opts->heartbeat_interval_ms), *repo_id, authz);
  auto server = StartGrpcServer(opts->listen, {&admin, &node_facing});
  if (!server.ok()) {
    return Fail(absl::StrCat("--listen: ", server.status().message()), 2);
  }
  if (insecure) {
    spdlog::warn(
        "--insecure: the admin and node APIs are plaintext and "
        "unauthenticated; anyone who can reach {} controls the cluster",
        opts->listen);
  } else if (no_admins) {
    spdlog::warn(
        "no --admin-token-file or --admin-identities: the admin API refuses "
        "every call");
  }
  spdlog::info(
      "controller serving on port {}, state in {}, repository {} (id {}), "
      "up to {} open files",
      server->port, opts->data_dir, (*repo)->Describe(), *repo_id, max_files);
  std::atomic<bool> listener_dead{false};
  std::unique_ptr<ListenerWatchdog> watchdog = WatchListener(
      opts->listen, *server, absl::Milliseconds(opts->listener_check_ms),
      &listener_dead);
  if (auto s = daemon::WritePortFile(opts->port_file, server->port); !s.ok()) {
    return Fail(s, 1);
  }
  daemon::NotifySystemd("READY=1");

  // SIGHUP (systemctl reload): re-read the token file. TLS files are
  // watched anyway (--tls-reload-seconds).
  int sig = daemon::WaitForShutdownSignal([&] {
    if (opts->admin_token_file.empty()) return;
    auto tokens = LoadTokenFile(opts->admin_token_file);
    if (!tokens.ok()) {
      spdlog::error("SIGHUP: keeping the old tokens: {}",
                    std::string(tokens.status().message()));
      return;
    }
    spdlog::info("SIGHUP: {} admin token(s) loaded", tokens->size());
    authz->ReplaceTokens(*std::move(tokens));
  });
  if (listener_dead) {
    server->server->GetHealthCheckService()->SetServingStatus(false);
  } else {
    spdlog::info("signal {}: shutting down", sig);
  }
  daemon::NotifySystemd("STOPPING=1");
  metrics.StopServing();  // its callbacks read what is torn down next
  watchdog.reset();
  StopGrpcServer(*server, kShutdownGrace);
  schedules_ptr = nullptr;
  schedules.Shutdown();
  maintenance_ptr = nullptr;
  maintenance.Shutdown();
  (*coordinator)->Shutdown();
  transport.Shutdown();
  timer.Shutdown();
  coordinator->reset();
  store->reset();
  spdlog::info("stopped");
  if (listener_dead) {
    return Fail("the gRPC listener stopped accepting connections", 1);
  }
  return 0;
}
