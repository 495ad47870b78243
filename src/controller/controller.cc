#include "controller/controller.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/daemon.h"
#include "common/fs.h"
#include "common/health.h"
#include "common/metrics.h"
#include "common/rpc.h"
#include "common/security.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "common/timer.h"
#include "controller/console.h"
#include "controller/controller_group.h"
#include "controller/controller_metrics.h"
#include "controller/etcd_client.h"
#include "controller/etcd_job_store.h"
#include "controller/job_engine.h"
#include "controller/job_store.h"
#include "controller/job_store_import.h"
#include "controller/kinds.h"
#include "controller/leader_election.h"
#include "controller/maintenance.h"
#include "controller/membership.h"
#include "controller/node_limits.h"
#include "controller/node_registry.h"
#include "controller/node_transport.h"
#include "controller/schedules.h"
#include "controller/services.h"
#include "controller/serving_gate.h"
#include "snapshot/repository.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {

namespace {
// The console's URL as others reach it (ControllerOptions::
// console_advertise).
std::string ConsoleUrl(const ControllerOptions& o, const std::string& advertise,
                       int port) {
  if (!o.console_advertise.empty()) return o.console_advertise;
  std::string host = o.console_listen.substr(0, o.console_listen.rfind(':'));
  if (host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]") {
    host = advertise.substr(0, advertise.rfind(':'));
  }
  return absl::StrCat(o.tls.insecure ? "http" : "https", "://", host, ":", port,
                      "/");
}

// How long a shutdown waits for admin calls in flight (not for idle
// connections).
constexpr absl::Duration kShutdownGrace = absl::Seconds(5);
// The leader compacts etcd's history this often, keeping one interval of
// it (watches that fell behind by less can resume).
constexpr absl::Duration kEtcdCompactionInterval = absl::Minutes(5);
}  // namespace

// One term of leadership: everything that acts on jobs and nodes. Built
// when this controller starts leading (at once with the embedded store),
// from the store's state; stopped and dropped when it stops. Declared in
// start order; Stop() stops them in reverse. Calls in flight may hold the
// term (through TermServices) a moment longer; its parts then refuse them.
struct Controller::Term {
  uint64_t term = 0;
  metrics::Registry* metrics = nullptr;
  std::unique_ptr<GrpcNodeTransport> transport;
  ThreadTimer timer;
  std::unique_ptr<NodeRegistry> registry;
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
  TermServices services;
  bool stopped = false;

  // Stops dispatching, the workers, the calls to nodes and the timer.
  void Stop() {
    if (stopped) return;
    stopped = true;
    if (metrics != nullptr) metrics->RemoveCallbacks(this);
    schedules_ptr = nullptr;
    if (schedules) schedules->Shutdown();
    maintenance_ptr = nullptr;
    if (maintenance) maintenance->Shutdown();
    if (engine) engine->Shutdown();
    if (transport) transport->Shutdown();
    timer.Shutdown();
  }
  ~Term() {
    Stop();
    node_facing.reset();
    membership.reset();
    admin.reset();
    schedules.reset();
    maintenance.reset();
    engine.reset();
    limits.reset();
    registry.reset();
  }
};

// Process-wide parts, declared in start order; Shutdown() stops them in
// reverse.
struct Controller::Parts {
  // Held for the process's life: no second controller on this data
  // directory.
  std::optional<fs::DirectoryLock> data_dir_lock;
  std::shared_ptr<Authorizer> authz;
  std::unique_ptr<snapshot::Repository> repo;
  std::string repo_id;
  metrics::Registry metrics;
  std::unique_ptr<EtcdClient> etcd;    // with --job-store etcd://
  EtcdJobStore* etcd_store = nullptr;  // = store, with etcd
  std::unique_ptr<JobStore> store;
  std::string job_store_description;
  std::string advertise;
  std::string console_url;  // with --console-listen
  std::unique_ptr<ServingGate> gate;
  std::unique_ptr<AdminGate> admin;
  std::unique_ptr<ControllerGate> node_facing;
  std::optional<RunningServer> server;
  std::unique_ptr<LeaderElection> election;
  std::unique_ptr<ListenerWatchdog> watchdog;
  std::unique_ptr<Console> console;  // with --console-listen
  // The leading term (null while following); guarded by term_mu, which
  // only the election thread and Start/Shutdown take.
  absl::Mutex term_mu;
  std::shared_ptr<Term> term ABSL_GUARDED_BY(term_mu);
};

Controller::Controller(ControllerOptions options)
    : options_(std::move(options)) {}

Controller::~Controller() { Shutdown(); }

int Controller::port() const {
  return parts_ != nullptr && parts_->server ? parts_->server->port : 0;
}

absl::Status Controller::StartTerm(uint64_t term,
                                   std::function<bool()> may_send) {
  const ControllerOptions& o = options_;
  Parts& p = *parts_;
  auto t = std::make_shared<Term>();
  t->term = term;
  // On the queue of the heartbeat streams: one thread polls for both.
  t->transport = std::make_unique<GrpcNodeTransport>(term, may_send,
                                                     p.node_facing->queue());

  NodeRegistry::Options ropts;
  ropts.dead_after = absl::Milliseconds(o.node_dead_after_ms);
  // Three missed heartbeats: the registered incarnation no longer proves
  // it is alive, and a new one of the same node id waits instead of
  // being refused (a replaced disk, a crash and restart).
  ropts.silent_after = std::min(absl::Milliseconds(3 * o.heartbeat_interval_ms),
                                ropts.dead_after / 2);
  ropts.repository_id = p.repo_id;
  ropts.repository = p.repo->Describe();
  t->registry = std::make_unique<NodeRegistry>(ropts, Clock::Real());

  NodeLimits::Options lopts;
  lopts.adaptive = o.adaptive_limits;
  lopts.rule.latency_tolerance = o.adaptive_latency_tolerance;
  lopts.rule.disk_busy_target = o.adaptive_disk_busy_target;
  lopts.rule.cpu_busy_target = o.adaptive_cpu_busy_target;
  t->limits = std::make_unique<NodeLimits>(lopts, p.store.get());
  RETURN_IF_ERROR(t->limits->Load());

  JobEngine::Options eopts;
  eopts.rpc_timeout = absl::Milliseconds(o.rpc_timeout_ms);
  eopts.dispatch_threads = o.dispatch_threads;
  eopts.queue_at_nodes = o.queue_at_nodes;
  eopts.max_in_flight_total = o.max_in_flight_total;
  eopts.max_attempts = o.max_attempts;
  eopts.job_timeout = absl::Seconds(o.job_timeout_s);
  eopts.task_history_jobs = o.task_history_jobs;
  eopts.metrics = &p.metrics;
  eopts.limits = t->limits.get();
  eopts.leads = may_send;
  KindContext kinds;
  kinds.transport = t->transport.get();
  kinds.repo = p.repo.get();
  kinds.registry = t->registry.get();
  kinds.rpc_timeout = eopts.rpc_timeout;
  // Retention and schedules follow each snapshot commit (on their own
  // workers, which exist once the engine does).
  Term* raw = t.get();
  kinds.on_snapshot_commit = [raw](const std::string& snapshot_id) {
    if (auto* s = raw->schedules_ptr.load()) s->OnCommit(snapshot_id);
    if (auto* m = raw->maintenance_ptr.load()) m->RequestRetention();
  };
  kinds.on_verify_commit = [raw](const std::string& verify_id) {
    if (auto* s = raw->schedules_ptr.load()) s->OnCommit(verify_id);
  };
  ASSIGN_OR_RETURN(
      t->engine,
      JobEngine::Create(eopts, StandardKinds(kinds), t->registry.get(),
                        p.store.get(), p.repo.get(), &t->timer, Clock::Real()));

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
  t->maintenance = std::make_unique<Maintenance>(
      mopts, t->engine.get(), p.repo.get(), p.store.get(), Clock::Real());
  t->maintenance->Start();
  t->maintenance_ptr = t->maintenance.get();
  ScheduleRunner::Options sopts;
  sopts.min_every = absl::Milliseconds(o.schedule_min_interval_ms);
  t->schedules = std::make_unique<ScheduleRunner>(
      sopts, t->engine.get(), t->maintenance.get(), p.store.get(), &t->timer,
      Clock::Real());
  RETURN_IF_ERROR(t->schedules->Start());
  t->schedules_ptr = t->schedules.get();

  t->metrics = &p.metrics;
  ExportControllerState(&p.metrics, t->registry.get(), t->schedules.get(), raw);
  ExportNodeLimits(&p.metrics, t->limits.get(), raw);
  t->admin = std::make_unique<AdminServiceImpl>(
      t->registry.get(), t->engine.get(), t->maintenance.get(),
      t->schedules.get(), p.authz);
  t->membership =
      std::make_unique<Membership>(t->registry.get(), t->engine.get(),
                                   absl::Milliseconds(o.heartbeat_interval_ms),
                                   p.repo_id, term, t->transport.get());
  t->node_facing =
      std::make_unique<ControllerServiceImpl>(t->membership.get(), p.authz);
  t->services.admin = t->admin.get();
  t->services.node_facing = t->node_facing.get();
  {
    absl::MutexLock l(&p.term_mu);
    p.term = t;
  }
  // Callers reach the term from now on.
  p.gate->Set(std::shared_ptr<const TermServices>(t, &t->services));
  if (p.etcd != nullptr) {
    ScheduleEtcdCompaction(p.etcd.get(), &t->timer, kEtcdCompactionInterval,
                           /*keep_from=*/0);
  }
  return absl::OkStatus();
}

void Controller::StopTerm() {
  Parts& p = *parts_;
  if (p.gate) p.gate->Set(nullptr);  // new calls are redirected from now on
  std::shared_ptr<Term> t;
  {
    absl::MutexLock l(&p.term_mu);
    t = std::move(p.term);
  }
  if (t != nullptr) t->Stop();
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
  auto lock = fs::DirectoryLock::Acquire(o.data_dir, "controller.lock",
                                         "shutter-controller");
  if (!lock.ok()) return daemon::ConfigError("--data-dir", lock.status());
  p.data_dir_lock = *std::move(lock);
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

  std::optional<EtcdUrl> etcd_url;
  if (o.job_store.empty()) {
    ASSIGN_OR_RETURN(p.store, RocksDbJobStore::Open(o.data_dir + "/jobs"));
    p.job_store_description = "rocksdb:" + o.data_dir + "/jobs";
  } else {
    auto url = ParseEtcdUrl(o.job_store);
    if (!url.ok()) return daemon::ConfigError("--job-store", url.status());
    etcd_url = *url;
    EtcdClient::Options copts;
    copts.endpoints = url->endpoints;
    copts.tls.ca = o.etcd_tls_ca;
    copts.tls.cert = o.etcd_tls_cert;
    copts.tls.key = o.etcd_tls_key;
    copts.observer = EtcdMetricsObserver(&p.metrics);
    auto client = EtcdClient::Create(copts);
    if (!client.ok())
      return daemon::ConfigError("--job-store", client.status());
    p.etcd = *std::move(client);
    EtcdJobStore::Options sopts;
    sopts.prefix = url->prefix;
    auto store = std::make_unique<EtcdJobStore>(p.etcd.get(), sopts);
    p.etcd_store = store.get();
    p.store = std::move(store);
    p.job_store_description = o.job_store;
  }

  ExportAuthDenials(&p.metrics, p.authz.get());
  RETURN_IF_ERROR(daemon::ConfigError(
      "--metrics-listen",
      metrics::StartDaemonMetrics(&p.metrics, o.metrics_listen)));
  p.gate = std::make_unique<ServingGate>(
      [&p]() -> std::string {
        if (p.election == nullptr) return "";
        return p.election->Current().leader_address;
      },
      // Set before the election starts, so before any leader is known.
      [&p] { return p.advertise; });
  p.admin = std::make_unique<AdminGate>(p.gate.get(), p.authz,
                                        [this] { return ListControllers(); });
  p.node_facing = std::make_unique<ControllerGate>(p.gate.get());
  p.metrics.AddGaugeCallback(
      "shutter_controller_heartbeat_streams",
      "Open heartbeat streams (ControllerService.HeartbeatStream): one per "
      "node that heartbeats to this controller over a stream",
      [gate = p.node_facing.get()](const metrics::EmitFn& emit) {
        emit({}, gate->open_streams());
      });
  // Small frequent messages (heartbeats, admin calls): no BDP probing.
  ServerLimits limits;
  limits.bdp_probe = false;
  auto server = StartGrpcServer(
      o.listen, {p.admin.get(), p.node_facing.get()}, limits,
      [&p](grpc::ServerBuilder& b) { p.node_facing->AddQueue(b); });
  if (!server.ok()) return daemon::ConfigError("--listen", server.status());
  p.server = *std::move(server);
  p.node_facing->Start();
  // The election's lease keep-alive and watches are polled by the same one
  // thread as the heartbeat streams and the calls to nodes.
  if (p.etcd != nullptr) p.etcd->UseQueue(p.node_facing->queue());
  p.advertise =
      o.advertise.empty() ? SelfAddress(o.listen, p.server->port) : o.advertise;

  if (!o.console_listen.empty()) {
    // Before the election: a follower's console serves too (it says who
    // leads), and the URL goes into this controller's record.
    Console::Options co;
    co.listen = o.console_listen;
    co.tls = o.tls;
    auto console = Console::Start(
        co, p.server->server->InProcessChannel(grpc::ChannelArguments()),
        p.authz);
    if (!console.ok()) {
      return daemon::ConfigError("--console-listen", console.status());
    }
    p.console = *std::move(console);
    p.console_url = ConsoleUrl(o, p.advertise, p.console->port());
    spdlog::info("console on {}", p.console_url);
  }

  if (!etcd_url) {
    // One controller: it leads from the start, in term 0.
    ExportSoleLeader(&p.metrics);
    RETURN_IF_ERROR(StartTerm(0, nullptr));
  } else {
    LeaderElection::Options eo;
    eo.prefix = etcd_url->prefix;
    eo.id = p.advertise;
    eo.address = p.advertise;
    eo.lease = absl::Milliseconds(o.leader_lease_ms);
    eo.version = PROJECT_VERSION_STRING;
    eo.console_url = p.console_url;
    LeaderElection::Callbacks cb;
    cb.on_elected = [this](int64_t term) {
      LeaderElection* e = parts_->election.get();
      return StartTerm(static_cast<uint64_t>(term),
                       [e, term] { return e->Leads(term); });
    };
    cb.on_deposed = [this] { StopTerm(); };
    p.election = std::make_unique<LeaderElection>(eo, p.etcd.get(),
                                                  p.etcd_store, std::move(cb));
    p.etcd_store->SetOnFenceLost([e = p.election.get()] { e->Depose(); });
    ExportElection(&p.metrics, p.election.get());
    p.election->Start();
  }
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
      "controller serving on port {} (advertised as {}), job store {}, "
      "repository {} (id {}), up to {} open files",
      p.server->port, p.advertise, p.job_store_description, p.repo->Describe(),
      p.repo_id, max_files);
  p.watchdog =
      WatchListener(o.listen, *p.server,
                    absl::Milliseconds(o.listener_check_ms), &listener_dead_);
  return daemon::WritePortFile(o.port_file, p.server->port);
}

absl::StatusOr<std::string> Controller::ImportEmbeddedJobStore(
    const ControllerOptions& o) {
  ASSIGN_OR_RETURN(EtcdUrl url, ParseEtcdUrl(o.job_store));
  EtcdClient::Options copts;
  copts.endpoints = url.endpoints;
  copts.tls.ca = o.etcd_tls_ca;
  copts.tls.cert = o.etcd_tls_cert;
  copts.tls.key = o.etcd_tls_key;
  ASSIGN_OR_RETURN(std::unique_ptr<EtcdClient> etcd, EtcdClient::Create(copts));
  // No controller may be running on the prefix.
  etcdserverpb::RangeRequest leader;
  leader.set_key(url.prefix + "leader");
  ASSIGN_OR_RETURN(etcdserverpb::RangeResponse r, etcd->Range(leader));
  if (!r.kvs().empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("a controller leads ", o.job_store,
                     ": stop every controller of the group first"));
  }
  const std::string path = o.import_job_store + "/jobs";
  auto source = RocksDbJobStore::Open(path);
  if (!source.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot open the embedded job store ", path,
        " (is its controller still running?): ", source.status().message()));
  }
  EtcdJobStore::Options sopts;
  sopts.prefix = url.prefix;
  sopts.fenced = false;
  EtcdJobStore target(etcd.get(), sopts);
  ASSIGN_OR_RETURN(ImportReport report, ImportJobStore(**source, target));
  return absl::StrCat("imported ", report.records, " records (", report.jobs,
                      " jobs) from ", path, " into ", o.job_store);
}

absl::StatusOr<shutter::v1::ListControllersResponse>
Controller::ListControllers() {
  Parts& p = *parts_;
  shutter::v1::ListControllersResponse out;
  out.set_job_store(p.job_store_description);
  out.set_answered_by(p.advertise);
  if (p.election == nullptr) {
    shutter::v1::ControllerInfo* c = out.add_controllers();
    c->set_id(p.advertise);
    c->set_address(p.advertise);
    c->set_role(shutter::v1::CONTROLLER_ROLE_LEADER);
    c->set_term(0);
    c->set_lease_left_ms(-1);
    c->set_version(PROJECT_VERSION_STRING);
    c->set_console_url(p.console_url);
    return out;
  }
  return DescribeControllerGroup(p.etcd.get(), p.election.get(),
                                 std::move(out));
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
    p.server->health->SetServing(false);
  }
  p.metrics.StopServing();  // its callbacks read what is torn down next
  p.console.reset();        // it calls the admin API
  p.watchdog.reset();
  // Open heartbeat streams are calls in flight: end them, or the server's
  // shutdown waits for them until its grace is over.
  if (p.node_facing) p.node_facing->CloseStreams();
  if (p.server) StopGrpcServer(*p.server, kShutdownGrace);
  // Steps down (on_deposed stops the term) and resigns, so another
  // controller leads at once.
  if (p.election) p.election->Shutdown();
  StopTerm();
  // The server's shutdown ended the heartbeat streams, StopTerm the calls
  // to nodes, the election's Shutdown its etcd streams: stop their queue's
  // thread.
  if (p.etcd != nullptr) p.etcd->UseQueue(nullptr);
  if (p.node_facing) p.node_facing->Stop();
  p.server.reset();
  p.node_facing.reset();
  p.admin.reset();
  p.gate.reset();
  p.election.reset();
  p.store.reset();
  p.etcd.reset();
  parts_.reset();
}

}  // namespace shutter::controller
