#ifndef SHUTTER_TESTS_TESTING_LOCAL_CLUSTER_H_
#define SHUTTER_TESTS_TESTING_LOCAL_CLUSTER_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "shutter/v1/admin.grpc.pb.h"
#include "shutter/v1/node.grpc.pb.h"
#include "snapshot/repository.h"
#include "testing/process.h"
#include "testing/s3_server.h"

namespace shutter::testing {

// A real cluster on loopback for integration tests and benchmarks: one
// shutter-controller and N shutter-node processes, each node hosting a
// contiguous range of partitions it leads. Processes are killed when the
// object goes away (and with the test process, see Subprocess).
// Not thread-safe.
class LocalCluster {
 public:
  struct Options {
    std::string controller_bin;
    std::string node_bin;
    std::string dir;  // everything lives below it
    int nodes = 3;
    int partitions_per_node = 8;
    int capacity = 2;
    int heartbeat_ms = 100;
    int dead_after_ms = 5000;
    std::string log_level = "info";
  };

  explicit LocalCluster(Options options);
  ~LocalCluster();

  // Starts (or restarts) the controller. The first start picks an
  // ephemeral port; restarts reuse it, since the nodes know only that.
  absl::Status StartController(std::vector<std::string> extra_flags = {});
  // Runs a group of `controllers` (> 1) sharing `job_store` (an etcd URL)
  // instead of one controller: StartController starts every member on a
  // port chosen up front, the nodes get all of them (--controller a,b,c)
  // and admin() reaches the leader. Call before starting anything.
  void SetControllerGroup(int controllers, std::string job_store) {
    controllers_ = controllers;
    job_store_ = std::move(job_store);
  }
  // The one controller keeps its jobs in etcd at `job_store` (an etcd URL,
  // lease 2 s) instead of its embedded store; StartController then waits
  // until it leads (after a kill, until etcd has expired the dead
  // process's lease). Call before starting anything.
  void SetJobStore(std::string job_store) {
    single_job_store_ = std::move(job_store);
  }
  // These start, stop and find one member of the group.
  absl::Status StartGroupController(int i,
                                    std::vector<std::string> extra_flags = {});
  absl::StatusOr<int> StopGroupController(
      int i, int sig, absl::Duration timeout = absl::Seconds(30));
  pid_t group_controller_pid(int i) const;
  std::string group_controller_address(int i) const;
  // The index of the member that leads, as the running members answer
  // ListControllers (the last leader found is asked first; `skip` is not
  // asked at all); -1 if none names one.
  int LeaderIndex(int skip = -1);
  // Member i reaches etcd at this URL instead (e.g. through a TcpProxy).
  // Before starting it.
  void SetGroupMemberJobStore(int i, std::string job_store) {
    member_job_store_[i] = std::move(job_store);
  }
  // Signals the controller and waits up to `timeout` (then SIGKILL and
  // DEADLINE_EXCEEDED); returns the wait status.
  absl::StatusOr<int> StopController(
      int sig, absl::Duration timeout = absl::Seconds(30));

  // Starts node i hosting (and leading) its own range of partitions, or
  // `partitions` / `leader_for` when given (id lists as the flags take).
  absl::Status StartNode(int i, std::vector<std::string> extra_flags = {},
                         const std::string& partitions = "",
                         const std::string& leader_for = "");
  // Transport security flags of the daemons (default: --insecure): the
  // controller's, and node i's. Set before starting them.
  void SetSecurity(std::vector<std::string> controller,
                   std::function<std::vector<std::string>(int)> node) {
    controller_security_ = std::move(controller);
    node_security_ = std::move(node);
  }
  // Environment entries ("NAME=value") for node i's next starts (e.g.
  // SHUTTER_TEST_KILL_AT); empty to clear.
  void SetNodeEnv(int i, std::vector<std::string> env) {
    node_env_[i] = std::move(env);
  }
  // Moves a partition's leadership on node i (NodeService.SetPartitionRole);
  // returns the node's epoch for it afterwards.
  absl::StatusOr<uint64_t> SetRole(int i, uint32_t partition, bool leader,
                                   uint64_t min_epoch = 0);
  absl::StatusOr<int> StopNode(int i, int sig,
                               absl::Duration timeout = absl::Seconds(30));
  absl::Status StartAllNodes(std::vector<std::string> extra_flags = {});
  void StopAllNodes();
  bool node_running(int i) const { return nodes_[i].process != nullptr; }
  // True once node i has exited by itself (reaped; not waited for).
  bool NodeExited(int i);
  pid_t node_pid(int i) const;
  pid_t controller_pid() const;

  // Waits until every partition has a live leader (and `pred` holds for the
  // listing, if given).
  absl::Status WaitForLeaders(
      absl::Duration timeout,
      const std::function<bool(const shutter::v1::ListPartitionsResponse&)>&
          pred = nullptr);

  shutter::v1::ListPartitionsResponse ListPartitions();
  absl::StatusOr<shutter::v1::Snapshot> GetSnapshot(const std::string& id);
  // Polls until the snapshot is COMMITTED or FAILED.
  absl::StatusOr<shutter::v1::Snapshot> WaitForSnapshot(const std::string& id,
                                                        absl::Duration timeout);
  absl::StatusOr<std::string> CreateSnapshot(
      const shutter::v1::CreateSnapshotRequest& request = {});

  // Writes one batch to a partition through its leader.
  absl::Status Write(
      uint32_t partition,
      const std::vector<std::pair<std::string, std::string>>& kvs);
  absl::StatusOr<shutter::v1::GetNodeStatsResponse> NodeStats(int i);
  // Benchmark data: every partition gets keys "key-%08d" 0..keys-1, each
  // holding `value_size` incompressible bytes (RandomValue, seeded by the
  // partition id), written in batches of `batch`, 4 partitions at a time.
  absl::Status LoadRandom(int keys, int value_size, int batch);
  // `size` pseudo-random bytes from `rng` (8 per draw; a tail under 8
  // bytes stays zero).
  static std::string RandomValue(std::mt19937_64& rng, int size);
  // Reads `keys` of a partition from its node through PartitionData (at
  // most 1,000 keys per call); absent keys map to nullopt.
  absl::StatusOr<std::vector<std::optional<std::string>>> Read(
      uint32_t partition, const std::vector<std::string>& keys);

  const Options& options() const { return options_; }
  int partitions() const {
    return options_.nodes * options_.partitions_per_node;
  }
  const std::string& controller_address() const { return controller_addr_; }
  const std::string& node_address(int i) const { return nodes_[i].address; }
  std::string node_dir(int i) const;
  std::string repo_dir() const { return options_.dir + "/repo"; }

  // Points the cluster at another repository (e.g. an S3 bucket) before
  // the controller starts: `uri` for --repository, `flags` added to every
  // daemon, `options` for this process' own reads (OpenRepository).
  void SetRepository(const std::string& uri, std::vector<std::string> flags,
                     const snapshot::RepositoryOptions& options) {
    repository_ = uri;
    repository_flags_ = std::move(flags);
    repository_options_ = options;
  }
  // The --repository the daemons get (repo_dir() unless SetRepository).
  std::string repository() const {
    return repository_.empty() ? repo_dir() : repository_;
  }
  // The cluster's repository, opened in this process.
  absl::StatusOr<std::unique_ptr<snapshot::Repository>> OpenRepository() const;
  static std::string NodeId(int i);

  // Drops this process' channels (to the controller and ChannelTo's), so
  // the next calls connect afresh, e.g. with other transport security.
  void CloseChannels();

  // A channel to `address` (a node's or a controller's), kept open and
  // shared by this process' calls to it, as a real client keeps its
  // connections. Thread-safe. A channel per call paid a TCP and HTTP/2
  // handshake on both sides every time: under the sanitizers, most of the
  // CPU of a test that writes in a loop.
  std::shared_ptr<grpc::Channel> ChannelTo(const std::string& address);

  // The admin API of the controller (a channel kept open).
  shutter::v1::AdminService::Stub* admin();

 private:
  struct Node {
    std::unique_ptr<Subprocess> process;
    std::string address;
  };

  // A port for a group member, not one of the group's already.
  absl::StatusOr<int> PickGroupPort() const;
  // The group's addresses, comma-separated (the nodes' --controller).
  std::string GroupAddresses() const;

  const Options options_;
  std::unique_ptr<Subprocess> controller_;
  // The group's members (SetControllerGroup) and their ports.
  int controllers_ = 1;
  std::string job_store_;
  std::map<int, std::string> member_job_store_;
  int last_leader_ = 0;
  std::vector<std::unique_ptr<Subprocess>> group_;
  std::vector<int> group_ports_;
  std::vector<std::string> group_flags_;
  std::string admin_target_;
  int controller_port_ = 0;
  std::string controller_addr_;
  std::unique_ptr<shutter::v1::AdminService::Stub> admin_;
  absl::Mutex channels_mu_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_
      ABSL_GUARDED_BY(channels_mu_);
  std::vector<Node> nodes_;
  std::map<int, std::vector<std::string>> node_env_;
  std::vector<std::string> controller_security_ = {"--insecure"};
  std::string single_job_store_;  // SetJobStore
  std::function<std::vector<std::string>(int)> node_security_;
  std::string repository_;
  std::vector<std::string> repository_flags_;
  snapshot::RepositoryOptions repository_options_;
};

// Starts the S3 test server (or joins $SHUTTER_TEST_S3_ENDPOINT's) and
// points `cluster` at a new bucket of it ("s3://<bucket>/<prefix>"), before
// the cluster starts. Use with SHUTTER_S3_OR_SKIP (s3_server.h):
//   auto s3 = StartS3For(cluster_, tmp_.Sub("s3"), "cluster");
//   SHUTTER_S3_OR_SKIP(s3);
//   s3_ = *std::move(s3);
absl::StatusOr<std::unique_ptr<S3TestServer>> StartS3For(
    LocalCluster& cluster, const std::string& dir, const std::string& prefix);

}  // namespace shutter::testing

#endif  // SHUTTER_TESTS_TESTING_LOCAL_CLUSTER_H_
