#include "node/node.h"

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/daemon.h"
#include "common/fs.h"
#include "common/metrics.h"
#include "common/rpc.h"
#include "common/security.h"
#include "common/status_macros.h"
#include "node/bootstrap.h"
#include "node/checkpoint_taker.h"
#include "node/heartbeater.h"
#include "node/load_monitor.h"
#include "node/node_host.h"
#include "node/node_instance.h"
#include "node/node_lifecycle.h"
#include "node/node_metrics.h"
#include "node/node_services.h"
#include "node/partition_restorer.h"
#include "node/partition_verifier.h"
#include "snapshot/file_hash_cache.h"
#include "snapshot/repository.h"
#include "spdlog/spdlog.h"

namespace shutter::node {

namespace {

// The settle time for checkpoints in flight at SIGTERM.
constexpr absl::Duration kShutdownGrace = absl::Seconds(10);

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
    while (!fs::Exists(file) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
    }
  };
}

}  // namespace

// Declared in start order; Shutdown() stops them in reverse.
struct Node::Parts {
  // Held for the process's life: no second node on this data directory
  // (it would raise the start count and release this node's publish locks
  // before failing to open the partitions).
  std::optional<fs::DirectoryLock> data_dir_lock;
  std::shared_ptr<const Authorizer> authz;
  NodeInstanceInfo instance;
  std::unique_ptr<snapshot::FileHashCache> hash_cache;
  std::unique_ptr<snapshot::Repository> repo;
  std::unique_ptr<NodeHost> host;
  // Starting, serving, draining: shared by checkpoints, restores, verifies.
  std::unique_ptr<NodeLifecycle> lifecycle;
  std::unique_ptr<CheckpointTaker> taker;
  std::unique_ptr<PartitionRestorer> restorer;
  std::unique_ptr<PartitionVerifier> verifier;
  metrics::Registry metrics;
  // The newest controller term seen (heartbeat answers, requests), kept in
  // <data-dir>/controller_term across restarts.
  std::unique_ptr<ControllerTerm> controller_term;
  std::unique_ptr<NodeServiceImpl> node_service;
  std::unique_ptr<PartitionDataImpl> data_service;
  std::optional<RunningServer> server;
  std::unique_ptr<LoadMonitor> load;
  std::unique_ptr<Heartbeater> heartbeater;
  std::unique_ptr<ListenerWatchdog> watchdog;
};

Node::Node(NodeOptions options) : options_(std::move(options)) {}

Node::~Node() { Shutdown(); }

int Node::port() const {
  return parts_ != nullptr && parts_->server ? parts_->server->port : 0;
}

std::optional<absl::Status> Node::fatal() const {
  absl::MutexLock l(&fatal_mu_);
  return fatal_;
}

absl::Status Node::Start() {
  const NodeOptions& o = options_;
  parts_ = std::make_unique<Parts>();
  Parts& p = *parts_;
  // Transport security first: every server and channel uses it.
  RETURN_IF_ERROR(daemon::ConfigError(CheckDaemonTls(o.tls)));
  ConfigureTransportSecurity(o.tls);
  Authorizer::Options authz_opts;
  authz_opts.enabled = !o.tls.insecure;
  authz_opts.controller_identity = o.controller_identity;
  p.authz = std::make_shared<const Authorizer>(std::move(authz_opts));
  const uint64_t max_files = RaiseOpenFileLimit();
  RETURN_IF_ERROR(
      daemon::ConfigError("--data-dir", fs::CheckWritableDir(o.data_dir)));
  auto lock =
      fs::DirectoryLock::Acquire(o.data_dir, "node.lock", "shutter-node");
  if (!lock.ok()) return daemon::ConfigError("--data-dir", lock.status());
  p.data_dir_lock = *std::move(lock);
  auto instance = StartNodeInstance(o.data_dir, o.node_id);
  if (!instance.ok()) {
    return daemon::ConfigError("--data-dir", instance.status());
  }
  p.instance = *std::move(instance);

  snapshot::RepositoryOptions repo_opts;
  repo_opts.create_if_missing = false;  // the controller creates it
  repo_opts.stream_bytes_per_second =
      static_cast<uint64_t>(o.publish_stream_mibps * 1048576.0);
  repo_opts.total_bytes_per_second =
      static_cast<uint64_t>(o.publish_bandwidth_mibps * 1048576.0);
  snapshot::ApplyS3Flags(o.s3, &repo_opts);
  // SHA-256 of SST files already published: unchanged files are neither
  // re-read nor re-uploaded by the next snapshot.
  ASSIGN_OR_RETURN(p.hash_cache,
                   snapshot::FileHashCache::Open(
                       o.hash_cache ? o.data_dir + "/published-hashes" : ""));
  if (o.hash_cache) repo_opts.hash_cache = p.hash_cache.get();
  repo_opts.publisher_instance =
      absl::StrCat(p.instance.instance_id, "/", p.instance.start_count);
  auto repo = snapshot::OpenRepository(o.repository, repo_opts);
  if (!repo.ok()) return daemon::ConfigError("--repository", repo.status());
  p.repo = *std::move(repo);
  ReleaseDeadPublishLocks(*p.repo, o.node_id, p.instance);
  if (!o.bootstrap_from.empty()) {
    BootstrapOptions bo;
    bo.data_dir = o.data_dir;
    bo.partitions = o.partitions;
    bo.from = o.bootstrap_from;
    bo.min_applied_index = o.bootstrap_min_applied_index;
    auto boot = BootstrapPartitions(bo, *p.repo);
    if (!boot.ok()) {
      absl::Status s(
          boot.status().code(),
          absl::StrCat("--bootstrap-from: ", boot.status().message()));
      const bool config = absl::IsNotFound(s) ||
                          absl::IsFailedPrecondition(s) ||
                          absl::IsInvalidArgument(s);
      return config ? daemon::ConfigError(std::move(s)) : s;
    }
    if (!boot->restored.empty()) {
      spdlog::info(
          "bootstrapped {} partition(s) from snapshot {} ({} bytes); "
          "{} had a local store",
          boot->restored.size(), boot->snapshot_id, boot->bytes,
          boot->kept.size());
    }
  }
  ASSIGN_OR_RETURN(p.host,
                   NodeHost::Open({o.data_dir, o.partitions, o.leader_for}));
  p.lifecycle = std::make_unique<NodeLifecycle>(o.node_id);
  CheckpointTaker::Options topts;
  topts.lifecycle = p.lifecycle.get();
  topts.node_id = o.node_id;
  topts.instance_id = p.instance.instance_id;
  topts.staging_dir = o.data_dir + "/staging";
  topts.data_dir = o.data_dir;
  topts.capacity = o.checkpoint_capacity;
  topts.min_free_bytes = static_cast<uint64_t>(o.min_free_mib) << 20;
  topts.io_class = *ParseIoClass(o.snapshot_io_class);  // checked
  topts.nice = o.snapshot_nice;
  if (o.test_before_checkpoint) {
    topts.test_before_checkpoint =
        [f = o.test_before_checkpoint](
            const shutter::v1::CreateCheckpointRequest& r) {
          f(r.partition_id());
        };
  }
  ASSIGN_OR_RETURN(p.taker,
                   CheckpointTaker::Create(topts, p.host.get(), p.repo.get(),
                                           Clock::Real()));
  PartitionRestorer::Options ropts;
  ropts.node_id = o.node_id;
  ropts.instance_id = p.instance.instance_id;
  ropts.capacity = o.checkpoint_capacity;
  ropts.io_class = topts.io_class;
  ropts.nice = topts.nice;
  ropts.check_serving = [l = p.lifecycle.get()] { return l->CheckServing(); };
  ropts.fault = TestFaultHook();
  ASSIGN_OR_RETURN(p.restorer,
                   PartitionRestorer::Create(ropts, p.host.get(), p.repo.get(),
                                             Clock::Real()));

  PartitionVerifier::Options vopts;
  vopts.node_id = o.node_id;
  vopts.instance_id = p.instance.instance_id;
  vopts.capacity = o.checkpoint_capacity;
  vopts.scratch_dir = o.data_dir + "/staging/verify";
  vopts.io_class = topts.io_class;
  vopts.nice = topts.nice;
  vopts.check_serving = [l = p.lifecycle.get()] { return l->CheckServing(); };
  ASSIGN_OR_RETURN(p.verifier, PartitionVerifier::Create(vopts, p.repo.get(),
                                                         Clock::Real()));

  // Metrics: collected always, served with --metrics-listen.
  ExportNodeState(&p.metrics, o.data_dir, p.taker.get(), p.restorer.get(),
                  p.authz.get(), &p.host->write_stalls());
  RETURN_IF_ERROR(daemon::ConfigError(
      "--metrics-listen",
      metrics::StartDaemonMetrics(&p.metrics, o.metrics_listen)));

  auto term = ControllerTerm::Open(o.data_dir + "/controller_term");
  if (!term.ok()) return daemon::ConfigError("--data-dir", term.status());
  p.controller_term = std::move(term).value();

  // 1. Serve (the taker refuses checkpoints until step 3).
  p.node_service = std::make_unique<NodeServiceImpl>(
      p.taker.get(), p.host.get(), p.restorer.get(), p.authz,
      o.enable_data_plane, &p.metrics);
  p.node_service->set_verifier(p.verifier.get());
  p.node_service->set_controller_term(p.controller_term.get());
  p.data_service =
      std::make_unique<PartitionDataImpl>(p.host.get(), p.authz, &p.metrics);
  std::vector<grpc::Service*> services = {p.node_service.get()};
  if (o.enable_data_plane) services.push_back(p.data_service.get());
  auto server = StartGrpcServer(o.listen, services);
  if (!server.ok()) return daemon::ConfigError("--listen", server.status());
  p.server = *std::move(server);
  if (o.tls.insecure) {
    spdlog::warn("--insecure: NodeService{} plaintext and unauthenticated",
                 o.enable_data_plane ? " and the data plane are" : " is");
  }
  const std::string advertise =
      o.advertise.empty() ? WithPort(o.listen, p.server->port) : o.advertise;

  // 2. Register: the controller checks the incarnation and the repository.
  LoadMonitor::Options lopts;
  lopts.data_dir = o.data_dir;
  lopts.disk_device = o.disk_device;
  lopts.writes = p.host->write_latency();
  lopts.stalls = &p.host->write_stalls();
  lopts.checkpoints = p.taker->durations();
  lopts.activity = [t = p.taker.get(), r = p.restorer.get()] {
    const auto ts = t->GetStats();
    const auto rs = r->GetStats();
    return LoadMonitor::Activity{
        ts.in_flight + rs.in_flight,
        ts.published + ts.failed + rs.restored + rs.failed};
  };
  p.load = std::make_unique<LoadMonitor>(lopts, Clock::Real());
  Heartbeater::Options hopts;
  hopts.node_id = o.node_id;
  hopts.instance = p.instance;
  hopts.advertise_address = advertise;
  hopts.controller_addresses = absl::StrSplit(o.controller, ',');
  hopts.on_term = [term = p.controller_term.get()](uint64_t t) {
    term->Observe(t);
  };
  hopts.on_limit = [taker = p.taker.get()](uint32_t limit) {
    taker->SetLimit(limit);
  };
  hopts.checkpoint_capacity = o.checkpoint_capacity;
  hopts.interval = absl::Milliseconds(o.heartbeat_interval_ms);
  hopts.on_fatal = [this](const absl::Status& s) {
    {
      absl::MutexLock l(&fatal_mu_);
      fatal_ = s;
    }
    daemon::RaiseShutdownSignal();
  };
  hopts.load = [load = p.load.get()] { return load->Sample(); };
  p.heartbeater =
      std::make_unique<Heartbeater>(hopts, p.host.get(), p.repo.get());
  absl::Status registered = p.heartbeater->Register(absl::Seconds(2));
  if (Heartbeater::IsFatal(registered)) {
    return daemon::ConfigError("the controller refused this node", registered);
  }
  if (!registered.ok()) {
    spdlog::warn(
        "controller {} not reachable yet ({}); starting anyway and "
        "registering when it is",
        o.controller, std::string(registered.message()));
  }

  // 3. Lead, then take checkpoints.
  RETURN_IF_ERROR(p.host->TakeLeadership());
  p.lifecycle->SetServing(true);
  p.heartbeater->Start();
  p.host->SetRolesChangedListener(
      [h = p.heartbeater.get()] { h->ReportSoon(); });
  p.watchdog =
      WatchListener(o.listen, *p.server,
                    absl::Milliseconds(o.listener_check_ms), &listener_dead_);
  spdlog::info(
      "node {} (incarnation {}, start {}) serving on port {} (advertised as "
      "{}), {} partitions, capacity {}, repository {}, up to {} open files",
      o.node_id, p.instance.instance_id, p.instance.start_count, p.server->port,
      advertise, o.partitions.size(), o.checkpoint_capacity, p.repo->Describe(),
      max_files);
  RETURN_IF_ERROR(daemon::WritePortFile(o.port_file, p.server->port));
  started_ = true;
  return absl::OkStatus();
}

void Node::Shutdown() {
  if (parts_ == nullptr) return;
  Parts& p = *parts_;
  // A node that did not start, or was refused, neither leaves nor waits
  // for calls in flight.
  const bool clean = started_ && !fatal().has_value();
  if (listener_dead_ && p.server) {
    p.server->server->GetHealthCheckService()->SetServingStatus(false);
  }
  p.metrics.StopServing();  // its callbacks read what is torn down next
  p.watchdog.reset();
  if (p.host) p.host->SetRolesChangedListener(nullptr);  // before the reset
  if (p.heartbeater) p.heartbeater->Stop();
  // Take no new work; give checkpoints in flight a grace period, then
  // cancel what remains. Idle connections are not waited for.
  if (p.lifecycle) p.lifecycle->Drain();
  if (clean && !listener_dead_) {
    // Release this incarnation at the controller now (a replaced disk's
    // new incarnation is then accepted at once).
    absl::Status left = p.heartbeater->SendLeaving(absl::Seconds(1));
    if (!left.ok()) {
      spdlog::warn("could not tell controller {} that this node is leaving: {}",
                   options_.controller, left.ToString());
    }
  }
  if (p.server) {
    // Checkpoints asked over streams are waited for as unary calls are,
    // within the same grace period.
    const absl::Duration grace = clean ? kShutdownGrace : absl::ZeroDuration();
    const absl::Time deadline = absl::Now() + grace;
    if (p.node_service && !p.node_service->stream_calls().WaitIdle(grace)) {
      spdlog::warn(
          "{} streamed checkpoint(s) still running after the {} "
          "grace period; cancelling them",
          p.node_service->stream_calls().in_flight(),
          absl::FormatDuration(grace));
    }
    StopGrpcServer(*p.server,
                   std::max(absl::ZeroDuration(), deadline - absl::Now()));
  }
  if (p.taker) p.taker->Shutdown();
  if (p.restorer) p.restorer->Shutdown();
  if (p.verifier) p.verifier->Shutdown();
  p.heartbeater.reset();
  p.server.reset();
  p.data_service.reset();
  p.node_service.reset();
  p.taker.reset();
  p.restorer.reset();
  p.verifier.reset();
  p.host.reset();  // closes every RocksDB
  parts_.reset();
  started_ = false;
}

}  // namespace shutter::node
