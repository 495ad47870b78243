#include "controller/controller.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/daemon.h"
#include "common/fs.h"
#include "common/metrics.h"
#include "common/rpc.h"
#include "common/security.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "common/timer.h"
#include "controller/controller_metrics.h"
#include "controller/job_engine.h"
#include "controller/job_store.h"
#include "controller/kinds.h"
#include "controller/maintenance.h"
#include "controller/membership.h"
#include "controller/node_limits.h"
#include "controller/node_registry.h"
#include "controller/node_transport.h"
#include "controller/schedules.h"
#include "controller/services.h"
#include "snapshot/repository.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {

namespace {
// How long a shutdown waits for admin calls in flight (not for idle
// connections).
constexpr absl::Duration kShutdownGrace = absl::Seconds(5);
}  // namespace

// Declared in start order; Shutdown() stops them in reverse.
struct Controller::Parts {
  std::shared_ptr<Authorizer> authz;
  std::unique_ptr<snapshot::Repository> repo;
  std::string repo_id;
  std::unique_ptr<JobStore> store;
  std::unique_ptr<NodeRegistry> registry;
  metrics::Registry metrics;
  GrpcNodeTransport transport;
  ThreadTimer timer;
  std::unique_ptr<NodeLimits> limits;
  // Set once they exist; read by the snapshot kind's commit hook.
  std::atomic<Maintenance*> maintenance_ptr{nullptr};
  std::atomic<ScheduleRunner*> schedules_ptr{nullptr};
  std::unique_ptr<JobEngine> engine;
  std::unique_ptr<Maintenance> maintenance;
  std::unique_ptr<ScheduleRunner> schedules;
  std::unique_ptr<AdminServiceImpl> admin;
  std::unique_ptr<Membership> membership;
  std::unique_ptr<ControllerServiceImpl> node_facing;
  std::optional<RunningServer> server;
  std::unique_ptr<ListenerWatchdog> watchdog;
};

Controller::Controller(ControllerOptions options)
    : options_(std::move(options)) {}

Controller::~Controller() { Shutdown(); }

int Controller::port() const {
  return parts_ != nullptr && parts_->server ? parts_->server->port : 0;
}

absl::Status Controller::Start() {
  const ControllerOptions& o = options_;
  parts_ = std::make_unique<Parts>();
  Parts& p = *parts_;
  // Transport security first: every server and channel uses it.
  RETURN_IF_ERROR(daemon::ConfigError(CheckDaemonTls(o.tls)));
  Authorizer::Options authz_opts;
  authz_opts.enabled = !o.tls.insecure;
  if (!o.admin_token_file.empty()) {
    auto tokens = LoadTokenFile(o.admin_token_file);
    if (!tokens.ok()) return daemon::ConfigError(tokens.status());
    authz_opts.tokens = *std::move(tokens);
  }
  auto identities = ParseIdentityRoles(o.admin_identities);
  if (!identities.ok()) return daemon::ConfigError(identities.status());
  authz_opts.identities = *std::move(identities);
  ConfigureTransportSecurity(o.tls);
  const bool no_admins =
      authz_opts.tokens.empty() && authz_opts.identities.empty();
  p.authz = std::make_shared<Authorizer>(std::move(authz_opts));
  const uint64_t max_files = RaiseOpenFileLimit();
  RETURN_IF_ERROR(
      daemon::ConfigError("--data-dir", fs::CheckWritableDir(o.data_dir)));
  snapshot::RepositoryOptions repo_opts;
  snapshot::ApplyS3Flags(o.s3, &repo_opts);
  auto repo = snapshot::OpenRepository(o.repository, repo_opts);
  if (!repo.ok()) return daemon::ConfigError("--repository", repo.status());
  p.repo = *std::move(repo);
  auto repo_id = p.repo->ReadIdentity();
  if (!repo_id.ok()) {
    return daemon::ConfigError("--repository", repo_id.status());
  }
  p.repo_id = *repo_id;
  ASSIGN_OR_RETURN(p.store, RocksDbJobStore::Open(o.data_dir + "/jobs"));

  NodeRegistry::Options ropts;
  ropts.dead_after = absl::Milliseconds(o.node_dead_after_ms);
  // Three missed heartbeats: the registered incarnation no longer proves
  // it is alive, and a new one of the same node id waits instead of
  // being refused (a replaced disk, a crash and restart).
  ropts.silent_after = std::min(absl::Milliseconds(3 * o.heartbeat_interval_ms),
                                ropts.dead_after / 2);
  ropts.repository_id = p.repo_id;
  ropts.repository = p.repo->Describe();
  p.registry = std::make_unique<NodeRegistry>(ropts, Clock::Real());

  NodeLimits::Options lopts;
  lopts.adaptive = o.adaptive_limits;
  lopts.rule.latency_tolerance = o.adaptive_latency_tolerance;
  lopts.rule.disk_busy_target = o.adaptive_disk_busy_target;
  lopts.rule.cpu_busy_target = o.adaptive_cpu_busy_target;
  p.limits = std::make_unique<NodeLimits>(lopts, p.store.get());
  RETURN_IF_ERROR(p.limits->Load());

  JobEngine::Options eopts;
  eopts.rpc_timeout = absl::Milliseconds(o.rpc_timeout_ms);
  eopts.dispatch_threads = o.dispatch_threads;
  eopts.max_in_flight_total = o.max_in_flight_total;
  eopts.max_attempts = o.max_attempts;
  eopts.job_timeout = absl::Seconds(o.job_timeout_s);
  eopts.metrics = &p.metrics;
  eopts.limits = p.limits.get();
  KindContext kinds;
  kinds.transport = &p.transport;
  kinds.repo = p.repo.get();
  kinds.registry = p.registry.get();
  kinds.rpc_timeout = eopts.rpc_timeout;
  // Retention and schedules follow each snapshot commit (on their own
  // workers, which exist once the engine does).
  kinds.on_snapshot_commit = [&p](const std::string& snapshot_id) {
    if (auto* s = p.schedules_ptr.load()) s->OnCommit(snapshot_id);
    if (auto* m = p.maintenance_ptr.load()) m->RequestRetention();
  };
  kinds.on_verify_commit = [&p](const std::string& verify_id) {
    if (auto* s = p.schedules_ptr.load()) s->OnCommit(verify_id);
  };
  ASSIGN_OR_RETURN(
      p.engine,
      JobEngine::Create(eopts, StandardKinds(kinds), p.registry.get(),
                        p.store.get(), p.repo.get(), &p.timer, Clock::Real()));

  Maintenance::Options mopts;
  mopts.retention.set_keep_last(o.retention_keep_last);
  if (!o.retention_keep_within.empty()) {
    mopts.retention.set_keep_within_seconds(
        absl::ToInt64Seconds(*ParseDurationFlag("", o.retention_keep_within)));
  }
  for (const auto& label : o.retention_keep_labels) {
    mopts.retention.add_keep_labels(label);
  }
  mopts.gc_grace = *ParseDurationFlag("", o.gc_grace);
  mopts.gc_after_retention = o.gc_after_retention;
  p.maintenance = std::make_unique<Maintenance>(
      mopts, p.engine.get(), p.repo.get(), p.store.get(), Clock::Real());
  p.maintenance->Start();
  p.maintenance_ptr = p.maintenance.get();
  p.schedules = std::make_unique<ScheduleRunner>(
      ScheduleRunner::Options{}, p.engine.get(), p.maintenance.get(),
      p.store.get(), &p.timer, Clock::Real());
  RETURN_IF_ERROR(p.schedules->Start());
  p.schedules_ptr = p.schedules.get();

  ExportControllerState(&p.metrics, p.registry.get(), p.schedules.get(),
                        p.authz.get());
  ExportNodeLimits(&p.metrics, p.limits.get());
  RETURN_IF_ERROR(daemon::ConfigError(
      "--metrics-listen",
      metrics::StartDaemonMetrics(&p.metrics, o.metrics_listen)));
  p.admin = std::make_unique<AdminServiceImpl>(p.registry.get(), p.engine.get(),
                                               p.maintenance.get(),
                                               p.schedules.get(), p.authz);
  p.membership = std::make_unique<Membership>(
      p.registry.get(), p.engine.get(),
      absl::Milliseconds(o.heartbeat_interval_ms), p.repo_id);
  p.node_facing =
      std::make_unique<ControllerServiceImpl>(p.membership.get(), p.authz);
  auto server = StartGrpcServer(o.listen, {p.admin.get(), p.node_facing.get()});
  if (!server.ok()) return daemon::ConfigError("--listen", server.status());
  p.server = *std::move(server);
  if (o.tls.insecure) {
    spdlog::warn(
        "--insecure: the admin and node APIs are plaintext and "
        "unauthenticated; anyone who can reach {} controls the cluster",
        o.listen);
  } else if (no_admins) {
    spdlog::warn(
        "no --admin-token-file or --admin-identities: the admin API refuses "
        "every call");
  }
  spdlog::info(
      "controller serving on port {}, state in {}, repository {} (id {}), "
      "up to {} open files",
      p.server->port, o.data_dir, p.repo->Describe(), p.repo_id, max_files);
  p.watchdog =
      WatchListener(o.listen, *p.server,
                    absl::Milliseconds(o.listener_check_ms), &listener_dead_);
  return daemon::WritePortFile(o.port_file, p.server->port);
}

void Controller::Reload() {
  if (parts_ == nullptr || parts_->authz == nullptr ||
      options_.admin_token_file.empty()) {
    return;
  }
  auto tokens = LoadTokenFile(options_.admin_token_file);
  if (!tokens.ok()) {
    spdlog::error("SIGHUP: keeping the old tokens: {}",
                  std::string(tokens.status().message()));
    return;
  }
  spdlog::info("SIGHUP: {} admin token(s) loaded", tokens->size());
  parts_->authz->ReplaceTokens(*std::move(tokens));
}

void Controller::Shutdown() {
  if (parts_ == nullptr) return;
  Parts& p = *parts_;
  if (listener_dead_ && p.server) {
    p.server->server->GetHealthCheckService()->SetServingStatus(false);
  }
  p.metrics.StopServing();  // its callbacks read what is torn down next
  p.watchdog.reset();
  if (p.server) StopGrpcServer(*p.server, kShutdownGrace);
  p.schedules_ptr = nullptr;
  if (p.schedules) p.schedules->Shutdown();
  p.maintenance_ptr = nullptr;
  if (p.maintenance) p.maintenance->Shutdown();
  if (p.engine) p.engine->Shutdown();
  p.transport.Shutdown();
  p.timer.Shutdown();
  p.server.reset();
  p.node_facing.reset();
  p.membership.reset();
  p.admin.reset();
  p.schedules.reset();
  p.maintenance.reset();
  p.engine.reset();
  p.store.reset();
  parts_.reset();
}

}  // namespace shutter::controller
