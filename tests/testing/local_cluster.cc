#include "testing/local_cluster.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/rpc.h"
#include "common/status_macros.h"
#include "controller/job_states.h"
#include "shutter/v1/partition_data.grpc.pb.h"
#include "testing/etcd_server.h"

namespace shutter::testing {

using namespace shutter::v1;  // NOLINT

namespace {
std::chrono::system_clock::time_point Deadline(int seconds) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}
}  // namespace

LocalCluster::LocalCluster(Options options)
    : options_(std::move(options)), nodes_(options_.nodes) {}

LocalCluster::~LocalCluster() {
  admin_.reset();
  for (auto& n : nodes_) n.process.reset();  // SIGKILL + reap
  controller_.reset();
  group_.clear();
}

std::string LocalCluster::NodeId(int i) { return absl::StrCat("n", i + 1); }

std::string LocalCluster::node_dir(int i) const {
  return absl::StrCat(options_.dir, "/node", i);
}

pid_t LocalCluster::node_pid(int i) const {
  return nodes_[i].process ? nodes_[i].process->pid() : -1;
}

pid_t LocalCluster::controller_pid() const {
  return controller_ ? controller_->pid() : -1;
}

absl::StatusOr<std::unique_ptr<snapshot::Repository>>
LocalCluster::OpenRepository() const {
  snapshot::RepositoryOptions o = repository_options_;
  o.create_if_missing = false;
  return snapshot::OpenRepository(repository(), o);
}

AdminService::Stub* LocalCluster::admin() {
  std::string target = controller_addr_;
  if (controllers_ > 1) {
    const int leader = LeaderIndex();
    target = group_controller_address(leader < 0 ? 0 : leader);
  }
  if (!admin_ || target != admin_target_) {
    admin_ = AdminService::NewStub(ChannelTo(target));
    admin_target_ = target;
  }
  return admin_.get();
}

void LocalCluster::CloseChannels() {
  admin_.reset();
  absl::MutexLock l(&channels_mu_);
  channels_.clear();
}

std::shared_ptr<grpc::Channel> LocalCluster::ChannelTo(
    const std::string& address) {
  absl::MutexLock l(&channels_mu_);
  std::shared_ptr<grpc::Channel>& c = channels_[address];
  if (!c) c = MakeChannel(address);
  return c;
}

std::string LocalCluster::group_controller_address(int i) const {
  return absl::StrCat("127.0.0.1:", group_ports_[i]);
}

absl::StatusOr<int> LocalCluster::PickGroupPort() const {
  // Ports are released before the members bind them: two picks can return
  // the same one, so pick again until it is not the group's already.
  int port = 0;
  do {
    ASSIGN_OR_RETURN(port, PickFreePort());
  } while (std::find(group_ports_.begin(), group_ports_.end(), port) !=
           group_ports_.end());
  return port;
}

std::string LocalCluster::GroupAddresses() const {
  std::vector<std::string> addresses;
  for (int i = 0; i < static_cast<int>(group_ports_.size()); ++i) {
    addresses.push_back(group_controller_address(i));
  }
  return absl::StrJoin(addresses, ",");
}

pid_t LocalCluster::group_controller_pid(int i) const {
  return group_[i] ? group_[i]->pid() : -1;
}

int LocalCluster::LeaderIndex(int skip) {
  for (int k = 0; k < controllers_; ++k) {
    const int i = (last_leader_ + k) % controllers_;
    if (i == skip || !group_[i]) continue;
    auto stub = AdminService::NewStub(ChannelTo(group_controller_address(i)));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    ListControllersResponse resp;
    if (!stub->ListControllers(&ctx, ListControllersRequest(), &resp).ok()) {
      continue;
    }
    for (const auto& c : resp.controllers()) {
      if (c.role() != CONTROLLER_ROLE_LEADER) continue;
      for (int j = 0; j < controllers_; ++j) {
        if (j != skip && c.address() == group_controller_address(j)) {
          last_leader_ = j;
          return j;
        }
      }
    }
  }
  return -1;
}

absl::Status LocalCluster::StartGroupController(
    int i, std::vector<std::string> extra_flags) {
  std::vector<std::string> argv = {
      options_.controller_bin,
      "--listen",
      group_controller_address(i),
      "--data-dir",
      absl::StrCat(options_.dir, "/controller", i),
      "--repository",
      repository(),
      "--job-store",
      member_job_store_.count(i) ? member_job_store_[i] : job_store_,
      "--port-file",
      absl::StrCat(options_.dir, "/controller", i, ".port"),
      "--heartbeat-interval-ms",
      absl::StrCat(options_.heartbeat_ms),
      "--node-dead-after-ms",
      absl::StrCat(options_.dead_after_ms),
      "--adaptive-limits",
      "false",
      "--log-level",
      options_.log_level};
  argv.insert(argv.end(), repository_flags_.begin(), repository_flags_.end());
  argv.insert(argv.end(), controller_security_.begin(),
              controller_security_.end());
  argv.insert(argv.end(), group_flags_.begin(), group_flags_.end());
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  const std::string port_file =
      absl::StrCat(options_.dir, "/controller", i, ".port");
  std::filesystem::create_directories(options_.dir);
  std::filesystem::remove(port_file);
  group_[i] = std::make_unique<Subprocess>();
  const std::string log = absl::StrCat(options_.dir, "/controller", i, ".log");
  RETURN_IF_ERROR(group_[i]->Start(argv, log));
  // Up when its port file is written; a member that exits first (its port
  // taken, see StartController) is not waited for.
  auto port = WaitForPortFile(port_file, absl::Seconds(30), group_[i].get());
  if (absl::IsUnavailable(port.status())) {
    group_[i].reset();
    return absl::UnavailableError(
        absl::StrCat("controller ", i, " exited at start: ",
                     absl::StripAsciiWhitespace(ReadFileOrEmpty(log))));
  }
  return port.status();
}

absl::StatusOr<int> LocalCluster::StopGroupController(int i, int sig,
                                                      absl::Duration timeout) {
  if (!group_[i]) return absl::FailedPreconditionError("not running");
  auto st = group_[i]->Stop(sig, timeout);
  group_[i].reset();
  return st;
}

absl::Status LocalCluster::StartController(
    std::vector<std::string> extra_flags) {
  if (controllers_ > 1) {
    if (group_ports_.empty()) {
      for (int i = 0; i < controllers_; ++i) {
        ASSIGN_OR_RETURN(const int port, PickGroupPort());
        group_ports_.push_back(port);
      }
      group_.resize(controllers_);
      controller_addr_ = GroupAddresses();
    }
    group_flags_ = extra_flags;
    for (int i = 0; i < controllers_; ++i) {
      absl::Status s = StartGroupController(i);
      // A port is picked before the member binds it, and another process
      // (another test's etcd, proxy or controller) can take it in between
      // ("address already in use"). Until the nodes start, nobody else
      // knows the group's addresses: the member gets another port.
      const bool nodes_know_addresses =
          std::any_of(nodes_.begin(), nodes_.end(),
                      [](const Node& n) { return !n.address.empty(); });
      for (int retry = 0; !s.ok() && retry < 3 && !nodes_know_addresses &&
                          absl::StrContains(s.message(), "already in use");
           ++retry) {
        ASSIGN_OR_RETURN(group_ports_[i], PickGroupPort());
        controller_addr_ = GroupAddresses();
        s = StartGroupController(i);
      }
      RETURN_IF_ERROR(s);
    }
    admin_.reset();
    return absl::OkStatus();
  }
  const std::string port_file = options_.dir + "/controller.port";
  std::filesystem::remove(port_file);
  std::vector<std::string> argv = {options_.controller_bin,
                                   "--listen",
                                   absl::StrCat("127.0.0.1:", controller_port_),
                                   "--data-dir",
                                   options_.dir + "/controller",
                                   "--repository",
                                   repository(),
                                   "--port-file",
                                   port_file,
                                   "--heartbeat-interval-ms",
                                   absl::StrCat(options_.heartbeat_ms),
                                   "--node-dead-after-ms",
                                   absl::StrCat(options_.dead_after_ms),
                                   "--log-level",
                                   options_.log_level};
  argv.insert(argv.end(), repository_flags_.begin(), repository_flags_.end());
  argv.insert(argv.end(), controller_security_.begin(),
              controller_security_.end());
  // Fixed per-node limits unless a test asks for adaptive ones: tests count
  // slots, and the adaptive rule would move them with the machine's load.
  if (std::find(extra_flags.begin(), extra_flags.end(), "--adaptive-limits") ==
      extra_flags.end()) {
    argv.insert(argv.end(), {"--adaptive-limits", "false"});
  }
  if (!single_job_store_.empty()) {
    argv.insert(argv.end(), {"--job-store", single_job_store_,
                             "--leader-lease-ms", "2000"});
  }
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  controller_ = std::make_unique<Subprocess>();
  absl::Status s = controller_->Start(argv, options_.dir + "/controller.log");
  if (!s.ok()) return s;
  auto port = WaitForPortFile(port_file, absl::Seconds(30), controller_.get());
  if (!port.ok()) return port.status();
  controller_port_ = *port;
  controller_addr_ = absl::StrCat("127.0.0.1:", *port);
  admin_.reset();
  if (!single_job_store_.empty()) {
    // On etcd it serves once it has won the election and loaded.
    grpc::Status last;
    const bool leads = PollUntil(
        [&] {
          grpc::ClientContext ctx;
          ListNodesResponse r;
          last = admin()->ListNodes(&ctx, {}, &r);
          return last.ok();
        },
        absl::Seconds(30));
    if (!leads) {
      return absl::DeadlineExceededError(
          absl::StrCat("the controller on etcd did not lead within 30 s: ",
                       last.error_message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int> LocalCluster::StopController(int sig,
                                                 absl::Duration timeout) {
  if (!controller_) return absl::FailedPreconditionError("not running");
  auto st = controller_->Stop(sig, timeout);
  controller_.reset();
  return st;
}

bool LocalCluster::NodeExited(int i) {
  int status = 0;
  if (nodes_[i].process == nullptr) return true;
  if (!nodes_[i].process->Exited(&status)) return false;
  nodes_[i].process.reset();
  return true;
}

absl::Status LocalCluster::StartNode(int i,
                                     std::vector<std::string> extra_flags,
                                     const std::string& partitions,
                                     const std::string& leader_for) {
  const std::string port_file = absl::StrCat(options_.dir, "/node", i, ".port");
  std::filesystem::remove(port_file);
  const int first = i * options_.partitions_per_node;
  std::vector<std::string> argv = {
      options_.node_bin,
      "--node-id",
      NodeId(i),
      "--listen",
      "127.0.0.1:0",
      "--controller",
      controller_addr_,
      "--data-dir",
      node_dir(i),
      "--repository",
      repository(),
      "--partitions",
      partitions.empty()
          ? absl::StrCat(first, "-", first + options_.partitions_per_node - 1)
          : partitions,
      "--checkpoint-capacity",
      absl::StrCat(options_.capacity),
      "--heartbeat-interval-ms",
      absl::StrCat(options_.heartbeat_ms),
      "--port-file",
      port_file,
      "--log-level",
      options_.log_level};
  if (!leader_for.empty()) {
    argv.push_back("--leader-for");
    argv.push_back(leader_for);
  }
  argv.insert(argv.end(), repository_flags_.begin(), repository_flags_.end());
  // Tests read and write through the reference data plane.
  argv.push_back("--enable-data-plane");
  const std::vector<std::string> security =
      node_security_ ? node_security_(i)
                     : std::vector<std::string>{"--insecure"};
  argv.insert(argv.end(), security.begin(), security.end());
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  auto p = std::make_unique<Subprocess>();
  absl::Status s = p->Start(
      argv, absl::StrCat(options_.dir, "/node", i, ".log"), node_env_[i]);
  if (!s.ok()) return s;
  auto port = WaitForPortFile(port_file, absl::Seconds(30), p.get());
  if (!port.ok()) return port.status();
  nodes_[i].process = std::move(p);
  nodes_[i].address = absl::StrCat("127.0.0.1:", *port);
  return absl::OkStatus();
}

absl::StatusOr<int> LocalCluster::StopNode(int i, int sig,
                                           absl::Duration timeout) {
  if (!nodes_[i].process) return absl::FailedPreconditionError("not running");
  auto st = nodes_[i].process->Stop(sig, timeout);
  nodes_[i].process.reset();
  return st;
}

absl::Status LocalCluster::StartAllNodes(std::vector<std::string> extra_flags) {
  for (int i = 0; i < options_.nodes; ++i) {
    absl::Status s = StartNode(i, extra_flags);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

void LocalCluster::StopAllNodes() {
  for (int i = 0; i < options_.nodes; ++i) {
    if (nodes_[i].process) StopNode(i, SIGTERM).IgnoreError();
  }
}

ListPartitionsResponse LocalCluster::ListPartitions() {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(5));
  ListPartitionsResponse resp;
  admin()->ListPartitions(&ctx, ListPartitionsRequest(), &resp).ok();
  return resp;
}

absl::Status LocalCluster::WaitForLeaders(
    absl::Duration timeout,
    const std::function<bool(const ListPartitionsResponse&)>& pred) {
  bool ok = PollUntil(
      [&] {
        ListPartitionsResponse parts = ListPartitions();
        if (parts.partitions_size() != partitions()) return false;
        for (const auto& p : parts.partitions()) {
          if (p.leader_node_id().empty()) return false;
        }
        return !pred || pred(parts);
      },
      timeout);
  if (!ok) {
    return absl::DeadlineExceededError(
        "partitions did not all get live leaders; logs in " + options_.dir);
  }
  return absl::OkStatus();
}

absl::StatusOr<Snapshot> LocalCluster::GetSnapshot(const std::string& id) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(5));
  GetSnapshotRequest req;
  req.set_snapshot_id(id);
  GetSnapshotResponse resp;
  grpc::Status s = admin()->GetSnapshot(&ctx, req, &resp);
  if (!s.ok()) return FromGrpcStatus(s);
  return resp.snapshot();
}

absl::StatusOr<Snapshot> LocalCluster::WaitForSnapshot(const std::string& id,
                                                       absl::Duration timeout) {
  Snapshot snap;
  bool done = PollUntil(
      [&] {
        auto s = GetSnapshot(id);
        if (!s.ok()) return false;
        snap = *s;
        return controller::IsFinished(snap.state());
      },
      timeout);
  if (!done) {
    return absl::DeadlineExceededError(
        absl::StrCat("snapshot ", id, " did not finish; state ",
                     SnapshotState_Name(snap.state())));
  }
  return snap;
}

absl::StatusOr<std::string> LocalCluster::CreateSnapshot(
    const CreateSnapshotRequest& request) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(30));
  CreateSnapshotResponse resp;
  grpc::Status s = admin()->CreateSnapshot(&ctx, request, &resp);
  if (!s.ok()) return FromGrpcStatus(s);
  return resp.snapshot_id();
}

absl::Status LocalCluster::Write(
    uint32_t partition,
    const std::vector<std::pair<std::string, std::string>>& kvs) {
  const int node = static_cast<int>(partition) / options_.partitions_per_node;
  auto stub = PartitionData::NewStub(ChannelTo(nodes_[node].address));
  WriteRequest req;
  req.set_partition_id(partition);
  for (const auto& [k, v] : kvs) {
    auto* put = req.add_mutations()->mutable_put();
    put->set_key(k);
    put->set_value(v);
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(30));
  WriteResponse resp;
  return FromGrpcStatus(stub->Write(&ctx, req, &resp));
}

std::string LocalCluster::RandomValue(std::mt19937_64& rng, int size) {
  std::string v(size, '\0');
  for (int b = 0; b + 8 <= size; b += 8) {
    uint64_t r = rng();
    std::memcpy(&v[b], &r, 8);
  }
  return v;
}

absl::Status LocalCluster::LoadRandom(int keys, int value_size, int batch) {
  std::atomic<int> next{0};
  absl::Mutex mu;
  absl::Status first;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int p = next++; p < partitions(); p = next++) {
        std::mt19937_64 rng(p);
        for (int k = 0; k < keys; k += batch) {
          std::vector<std::pair<std::string, std::string>> kvs;
          for (int j = k; j < std::min(keys, k + batch); ++j) {
            kvs.emplace_back(absl::StrFormat("key-%08d", j),
                             RandomValue(rng, value_size));
          }
          absl::Status s = Write(p, kvs);
          if (!s.ok()) {
            absl::MutexLock l(&mu);
            if (first.ok()) first = s;
            return;
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  return first;
}

absl::StatusOr<std::vector<std::optional<std::string>>> LocalCluster::Read(
    uint32_t partition, const std::vector<std::string>& keys) {
  const int node = static_cast<int>(partition) / options_.partitions_per_node;
  auto stub = PartitionData::NewStub(ChannelTo(nodes_[node].address));
  GetRequest req;
  req.set_partition_id(partition);
  for (const auto& k : keys) req.add_keys(k);
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(30));
  GetResponse resp;
  grpc::Status s = stub->Get(&ctx, req, &resp);
  if (!s.ok()) return FromGrpcStatus(s);
  std::vector<std::optional<std::string>> out;
  for (const auto& r : resp.results()) {
    out.push_back(r.found() ? std::optional<std::string>(r.value())
                            : std::nullopt);
  }
  return out;
}

absl::StatusOr<uint64_t> LocalCluster::SetRole(int i, uint32_t partition,
                                               bool leader,
                                               uint64_t min_epoch) {
  auto stub = NodeService::NewStub(ChannelTo(nodes_[i].address));
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(10));
  SetPartitionRoleRequest req;
  req.set_partition_id(partition);
  req.set_role(leader ? PARTITION_ROLE_LEADER : PARTITION_ROLE_FOLLOWER);
  req.set_min_epoch(min_epoch);
  SetPartitionRoleResponse resp;
  grpc::Status s = stub->SetPartitionRole(&ctx, req, &resp);
  if (!s.ok()) return FromGrpcStatus(s);
  return resp.leader_epoch();
}

absl::StatusOr<GetNodeStatsResponse> LocalCluster::NodeStats(int i) {
  auto stub = NodeService::NewStub(ChannelTo(nodes_[i].address));
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(5));
  GetNodeStatsResponse resp;
  grpc::Status s = stub->GetNodeStats(&ctx, GetNodeStatsRequest(), &resp);
  if (!s.ok()) return FromGrpcStatus(s);
  return resp;
}

absl::StatusOr<std::unique_ptr<S3TestServer>> StartS3For(
    LocalCluster& cluster, const std::string& dir, const std::string& prefix) {
  ASSIGN_OR_RETURN(std::unique_ptr<S3TestServer> s3, S3TestServer::Start(dir));
  ASSIGN_OR_RETURN(std::string uri, s3->NewRepositoryUri(prefix));
  cluster.SetRepository(uri, s3->DaemonFlags(), s3->Options());
  return s3;
}

}  // namespace shutter::testing
