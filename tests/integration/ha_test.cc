// Controller high availability on a real etcd: three shutter-controller
// processes share one etcd prefix, three nodes follow the leader. The
// leader is SIGKILLed or SIGSTOPped in the middle of a throttled 48-partition
// snapshot; a follower takes over, the snapshot commits with every
// partition published exactly once, a retried create returns the same job,
// and nodes refuse the deposed leader's term.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/error_reason.h"
#include "common/fs.h"
#include "common/rpc.h"
#include "controller/etcd_client.h"
#include "gtest/gtest.h"
#include "shutter/v1/node.grpc.pb.h"
#include "snapshot/repository.h"
#include "testing/binaries.h"
#include "testing/etcd_server.h"
#include "testing/local_cluster.h"
#include "testing/process.h"
#include "testing/status_matchers.h"
#include "testing/tcp_proxy.h"
#include "testing/temp_dir.h"

namespace shutter {
namespace {

using ::shutter::testing::EtcdTestServer;
using ::shutter::testing::LocalCluster;
using ::shutter::testing::PollUntil;
using ::shutter::testing::TempDir;
using namespace shutter::v1;  // NOLINT

constexpr int kNodes = 3;
constexpr int kPerNode = 16;
constexpr int kLeaseMs = 2000;
// etcd's default --election-timeout (the tests' etcd keeps it).
constexpr int kEtcdElectionTimeoutMs = 1000;

LocalCluster::Options ClusterOptions(const TempDir& tmp) {
  LocalCluster::Options o;
  o.controller_bin = SHUTTER_CONTROLLER_BIN;
  o.node_bin = SHUTTER_NODE_BIN;
  o.dir = tmp.Sub("cluster");
  o.nodes = kNodes;
  o.partitions_per_node = kPerNode;
  o.capacity = 2;
  return o;
}

class HaTest : public ::testing::Test {
 protected:
  // etcd members: one, or three for the tests of etcd's own faults.
  virtual int EtcdMembers() const { return 1; }

  void SetUp() override {
    etcd_ = EtcdTestServer::Start(tmp_.Sub("etcd"), EtcdMembers());
    SHUTTER_ETCD_OR_SKIP(etcd_);
    cluster_ = std::make_unique<LocalCluster>(ClusterOptions(tmp_));
    cluster_->SetControllerGroup(3, (*etcd_)->Url("ha"));
    // Member 0 reaches etcd through a proxy the test can cut.
    const std::string endpoint = (*etcd_)->Endpoints()[0];
    auto proxy = testing::TcpProxy::Start(
        std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
    ASSERT_OK(proxy.status());
    proxy_ = *std::move(proxy);
    cluster_->SetGroupMemberJobStore(
        0, absl::StrCat("etcd://127.0.0.1:", proxy_->port(), "/ha"));
    ASSERT_OK(cluster_->StartController(
        {"--leader-lease-ms", absl::StrCat(kLeaseMs), "--max-attempts", "50",
         "--schedule-min-interval-ms", "1000"}));
    ASSERT_TRUE(PollUntil([&] { return cluster_->LeaderIndex() >= 0; },
                          absl::Seconds(20)));
    // Slow publishing (~0.6 s per partition) so the snapshot is still
    // running when the test strikes.
    ASSERT_OK(cluster_->StartAllNodes({"--publish-stream-mibps", "1"}));
    ASSERT_OK(cluster_->WaitForLeaders(absl::Seconds(30)));
    ASSERT_OK(cluster_->LoadRandom(150, 4096, 50));
  }

  void TearDown() override {
    if (cluster_ == nullptr) return;
    if (HasFailure()) {
      // What the controllers said, for a failure seen only in CI.
      for (int i = 0; i < 3; ++i) {
        auto log = fs::ReadFile(
            absl::StrCat(tmp_.Sub("cluster"), "/controller", i, ".log"));
        if (!log.ok()) continue;
        const size_t from = log->size() > 6000 ? log->size() - 6000 : 0;
        std::fprintf(stderr, "--- controller %d log (tail) ---\n%s\n", i,
                     log->substr(from).c_str());
      }
    }
    cluster_->CloseChannels();
    cluster_->StopAllNodes();
    for (int i = 0; i < 3; ++i) {
      cluster_->StopGroupController(i, SIGKILL).IgnoreError();
    }
  }

  // Waits until a leader other than `old` leads; returns its index.
  int WaitForNewLeader(int old, absl::Duration timeout) {
    int leader = -1;
    PollUntil(
        [&] {
          leader = cluster_->LeaderIndex(/*skip=*/old);
          return leader >= 0 && leader != old;
        },
        timeout);
    return leader;
  }

  // Waits (bounded) until member i logs that it stepped down as leader.
  bool WaitForStepDown(int i, absl::Duration timeout) {
    const std::string log =
        absl::StrCat(tmp_.Sub("cluster"), "/controller", i, ".log");
    return PollUntil(
        [&] {
          auto text = fs::ReadFile(log);
          return text.ok() && text->find("steps down") != std::string::npos;
        },
        timeout);
  }

  // Sum over the nodes of checkpoints published (never twice for one
  // partition of one snapshot: a re-request is answered from what is
  // already there).
  int PublishedOnNodes() {
    int n = 0;
    for (int i = 0; i < kNodes; ++i) {
      auto st = cluster_->NodeStats(i);
      EXPECT_OK(st.status());
      if (st.ok()) n += static_cast<int>(st->checkpoints_published());
    }
    return n;
  }

  // The committed snapshot's manifest holds every partition once.
  void ExpectCommittedOnce(const std::string& id) {
    auto snap = cluster_->WaitForSnapshot(id, absl::Seconds(120));
    ASSERT_OK(snap.status());
    EXPECT_EQ(snap->state(), SNAPSHOT_STATE_COMMITTED) << snap->error();
    auto repo = cluster_->OpenRepository();
    ASSERT_OK(repo.status());
    auto cm = (*repo)->ReadClusterManifest(id);
    ASSERT_OK(cm.status());
    std::set<uint32_t> ids;
    for (const auto& p : cm->partitions()) {
      EXPECT_TRUE(ids.insert(p.partition_id()).second)
          << "partition " << p.partition_id() << " twice";
    }
    EXPECT_EQ(static_cast<int>(ids.size()), kNodes * kPerNode);
  }

  // The leader's term as the group reports it (0: none).
  uint64_t LeaderTerm() {
    grpc::ClientContext ctx;
    ListControllersResponse group;
    if (!cluster_->admin()->ListControllers(&ctx, {}, &group).ok()) return 0;
    for (const auto& c : group.controllers()) {
      if (c.role() == CONTROLLER_ROLE_LEADER) return c.term();
    }
    return 0;
  }

  // The garbage collection jobs the leader lists, newest first.
  absl::StatusOr<std::vector<SnapshotSummary>> GcJobs() {
    grpc::ClientContext ctx;
    ListSnapshotsRequest req;
    req.set_type(JOB_TYPE_GC);
    ListSnapshotsResponse list;
    grpc::Status s = cluster_->admin()->ListSnapshots(&ctx, req, &list);
    if (!s.ok()) return absl::UnavailableError(s.error_message());
    return std::vector<SnapshotSummary>(list.snapshots().begin(),
                                        list.snapshots().end());
  }

  // Running tasks of `id` as the leader reports them.
  int Published(const std::string& id) {
    auto s = cluster_->GetSnapshot(id);
    if (!s.ok()) return -1;
    int n = 0;
    for (const auto& t : s->partitions()) {
      if (t.state() == PARTITION_TASK_STATE_PUBLISHED) ++n;
    }
    return n;
  }

  TempDir tmp_;
  absl::StatusOr<std::unique_ptr<EtcdTestServer>> etcd_;
  std::unique_ptr<testing::TcpProxy> proxy_;
  std::unique_ptr<LocalCluster> cluster_;
};

TEST_F(HaTest, LeaderKilledMidSnapshotAFollowerFinishesItOnce) {
  const int old = cluster_->LeaderIndex();
  ASSERT_GE(old, 0);
  CreateSnapshotRequest req;
  req.set_request_id("ha-test-snapshot-1");
  auto id = cluster_->CreateSnapshot(req);
  ASSERT_OK(id.status());
  // Strike once some, not all, partitions are published.
  ASSERT_TRUE(
      PollUntil([&] { return Published(*id) >= 6; }, absl::Seconds(60)));
  ASSERT_LT(Published(*id), kNodes * kPerNode);
  ASSERT_OK(cluster_->StopGroupController(old, SIGKILL).status());
  const absl::Time killed = absl::Now();
  const int leader = WaitForNewLeader(old, absl::Seconds(20));
  ASSERT_GE(leader, 0);
  // Within the lease and a second (etcd expires the dead leader's lease).
  EXPECT_LT(absl::Now() - killed, absl::Milliseconds(kLeaseMs + 1000));

  // The same create retried on the new leader, as a client does until a
  // leader serves (it may still be loading): the same job.
  absl::StatusOr<std::string> again;
  ASSERT_TRUE(PollUntil(
      [&] {
        again = cluster_->CreateSnapshot(req);
        return !absl::IsUnavailable(again.status());
      },
      absl::Seconds(30)));
  ASSERT_OK(again.status());
  EXPECT_EQ(*again, *id);

  ExpectCommittedOnce(*id);
  EXPECT_EQ(PublishedOnNodes(), kNodes * kPerNode);
  // On etcd too, a controller's connections (heartbeat streams, calls to
  // nodes, the election's etcd streams) are polled by its one queue thread:
  // none of gRPC's callback-API threads ("nexting_thread") in the new
  // leader, which ran the job, or the follower.
  for (int i = 0; i < 3; ++i) {
    if (i == old) continue;
    const std::vector<std::string> threads =
        testing::ThreadNames(cluster_->group_controller_pid(i));
    EXPECT_FALSE(threads.empty());
    EXPECT_EQ(std::count(threads.begin(), threads.end(), "nexting_thread"), 0)
        << "controller " << i << ": " << absl::StrJoin(threads, ", ");
    EXPECT_EQ(std::count(threads.begin(), threads.end(), "etcd-queue"), 0)
        << "controller " << i << ": " << absl::StrJoin(threads, ", ");
  }
  // One snapshot in the history, which the new leader read from etcd.
  ListSnapshotsResponse list;
  grpc::ClientContext ctx;
  ASSERT_TRUE(cluster_->admin()->ListSnapshots(&ctx, {}, &list).ok());
  int snapshots = 0;
  for (const auto& s : list.snapshots()) {
    if (s.type() == JOB_TYPE_SNAPSHOT) {
      ++snapshots;
    }
  }
  EXPECT_EQ(snapshots, 1);
}

TEST_F(HaTest, LeaderKilledMidRestoreAFollowerFinishesIt) {
  auto snap = cluster_->CreateSnapshot();
  ASSERT_OK(snap.status());
  ASSERT_OK(cluster_->WaitForSnapshot(*snap, absl::Seconds(120)).status());
  // Written after the snapshot: the restore must take every partition
  // back to before it.
  for (int p = 0; p < kNodes * kPerNode; ++p) {
    ASSERT_OK(cluster_->Write(p, {{"after-snapshot", "x"}}));
  }
  const int old = cluster_->LeaderIndex();
  ASSERT_GE(old, 0);
  RestoreSnapshotRequest req;
  req.set_snapshot_id(*snap);
  req.set_request_id("ha-test-restore-1");
  RestoreSnapshotResponse first;
  {
    grpc::ClientContext ctx;
    grpc::Status s = cluster_->admin()->RestoreSnapshot(&ctx, req, &first);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  const std::string id = first.restore_id();
  ASSERT_TRUE(PollUntil([&] { return Published(id) >= 6; }, absl::Seconds(60)));
  ASSERT_LT(Published(id), kNodes * kPerNode);
  ASSERT_OK(cluster_->StopGroupController(old, SIGKILL).status());
  const int leader = WaitForNewLeader(old, absl::Seconds(20));
  ASSERT_GE(leader, 0);
  // Retried on the new leader (until one serves): the same restore.
  RestoreSnapshotResponse again;
  grpc::Status retried;
  ASSERT_TRUE(PollUntil(
      [&] {
        grpc::ClientContext ctx;
        retried = cluster_->admin()->RestoreSnapshot(&ctx, req, &again);
        return retried.error_code() != grpc::StatusCode::UNAVAILABLE;
      },
      absl::Seconds(30)));
  ASSERT_TRUE(retried.ok()) << retried.error_message();
  EXPECT_EQ(again.restore_id(), id);
  auto done = cluster_->WaitForSnapshot(id, absl::Seconds(120));
  ASSERT_OK(done.status());
  EXPECT_EQ(done->state(), SNAPSHOT_STATE_COMMITTED) << done->error();
  for (int p = 0; p < kNodes * kPerNode; ++p) {
    auto got = cluster_->Read(p, {"after-snapshot"});
    ASSERT_OK(got.status());
    EXPECT_FALSE((*got)[0].has_value()) << "partition " << p;
  }
}

TEST_F(HaTest, ALeaderCutOffFromEtcdOnlyStopsWithinItsLeaseAndIsReplaced) {
  // Make member 0 (behind the proxy) the leader: a leader that stops
  // resigns, and another member takes over.
  for (int round = 0; round < 6; ++round) {
    const int leader = cluster_->LeaderIndex();
    ASSERT_GE(leader, 0);
    if (leader == 0) break;
    ASSERT_OK(cluster_->StopGroupController(leader, SIGTERM).status());
    ASSERT_GE(WaitForNewLeader(leader, absl::Seconds(20)), 0);
    ASSERT_OK(cluster_->StartGroupController(leader));
  }
  ASSERT_EQ(cluster_->LeaderIndex(), 0);
  auto id = cluster_->CreateSnapshot();
  ASSERT_OK(id.status());
  ASSERT_TRUE(
      PollUntil([&] { return Published(*id) >= 6; }, absl::Seconds(60)));
  ASSERT_LT(Published(*id), kNodes * kPerNode);
  // Member 0 still reaches the nodes, but no longer etcd (a black hole).
  proxy_->Cut();
  const absl::Time cut = absl::Now();
  ASSERT_TRUE(WaitForStepDown(0, absl::Seconds(10)));
  // It stops within its lease (counted from its last renewal, a third of
  // a lease before the cut at most) and the poll.
  EXPECT_LT(absl::Now() - cut, absl::Milliseconds(kLeaseMs + 500));
  const int leader = WaitForNewLeader(0, absl::Seconds(20));
  ASSERT_GE(leader, 1);
  ExpectCommittedOnce(*id);
  EXPECT_EQ(PublishedOnNodes(), kNodes * kPerNode);
  // Back in touch with etcd, it follows.
  proxy_->Heal();
  ASSERT_TRUE(PollUntil(
      [&] {
        auto stub = AdminService::NewStub(
            MakeChannel(cluster_->group_controller_address(0)));
        grpc::ClientContext ctx;
        CreateSnapshotResponse r;
        grpc::Status s = stub->CreateSnapshot(&ctx, {}, &r);
        auto trailers = ctx.GetServerTrailingMetadata();
        auto it = trailers.find("shutter-leader");
        return s.error_code() == grpc::StatusCode::UNAVAILABLE &&
               it != trailers.end() &&
               std::string(it->second.data(), it->second.size()) ==
                   cluster_->group_controller_address(leader);
      },
      absl::Seconds(30)));
}

TEST_F(HaTest, APausedLeaderIsReplacedAndItsTermIsRefusedByNodes) {
  const int old = cluster_->LeaderIndex();
  ASSERT_GE(old, 0);
  auto id = cluster_->CreateSnapshot();
  ASSERT_OK(id.status());
  ASSERT_TRUE(
      PollUntil([&] { return Published(*id) >= 6; }, absl::Seconds(60)));
  const uint64_t old_term = LeaderTerm();
  ASSERT_GT(old_term, 0u);
  // Paused for twice its lease: a follower takes over meanwhile.
  const pid_t pid = cluster_->group_controller_pid(old);
  ASSERT_EQ(::kill(pid, SIGSTOP), 0);
  const int leader = WaitForNewLeader(old, absl::Seconds(20));
  ASSERT_GE(leader, 0);
  // From here on, every change under the group's prefix is watched.
  auto url = controller::ParseEtcdUrl((*etcd_)->Url("ha"));
  ASSERT_OK(url.status());
  controller::EtcdClient::Options etcd_options;
  etcd_options.endpoints = url->endpoints;
  auto etcd = controller::EtcdClient::Create(etcd_options);
  ASSERT_OK(etcd.status());
  int64_t from = 0;
  {
    etcdserverpb::RangeRequest probe;
    probe.set_key(url->prefix + "leader");
    auto r = (*etcd)->Range(probe);
    ASSERT_OK(r.status());
    from = r->header().revision() + 1;
  }
  absl::SleepFor(absl::Milliseconds(2 * kLeaseMs));  // the pause itself
  ASSERT_EQ(::kill(pid, SIGCONT), 0);

  ExpectCommittedOnce(*id);
  // The old leader is back as a follower of the new one.
  ASSERT_TRUE(PollUntil(
      [&] {
        auto stub = AdminService::NewStub(
            MakeChannel(cluster_->group_controller_address(old)));
        grpc::ClientContext ctx;
        ListControllersResponse r;
        if (!stub->ListControllers(&ctx, {}, &r).ok()) return false;
        for (const auto& c : r.controllers()) {
          if (c.address() == cluster_->group_controller_address(old)) {
            return c.role() == CONTROLLER_ROLE_FOLLOWER;
          }
        }
        return false;
      },
      absl::Seconds(20)));
  // Its admin API sends callers to the leader.
  {
    auto stub = AdminService::NewStub(
        MakeChannel(cluster_->group_controller_address(old)));
    grpc::ClientContext ctx;
    CreateSnapshotResponse r;
    grpc::Status s = stub->CreateSnapshot(&ctx, {}, &r);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
    auto trailers = ctx.GetServerTrailingMetadata();
    auto it = trailers.find("shutter-leader");
    ASSERT_NE(it, trailers.end());
    EXPECT_EQ(std::string(it->second.data(), it->second.size()),
              cluster_->group_controller_address(leader));
  }
  // Nodes refuse a request of an older term than the newest they heard.
  const uint64_t term = LeaderTerm();
  ASSERT_GT(term, 0u);
  auto node = NodeService::NewStub(MakeChannel(cluster_->node_address(0)));
  grpc::ClientContext ctx;
  CreateCheckpointRequest stale;
  stale.set_snapshot_id(*id);
  stale.set_partition_id(0);
  stale.set_controller_term(term - 1);
  CreateCheckpointResponse resp;
  grpc::Status s = node->CreateCheckpoint(&ctx, stale, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  absl::Status as = FromGrpcStatus(s, ctx);
  EXPECT_EQ(GetErrorReason(as), ErrorReason::kStaleController) << as;

  // The watch: every change of the job store since the take-over was made
  // by the new leader (each fenced transaction stamps <prefix>writer in the
  // same revision); none by the old one, which woke up meanwhile.
  etcdserverpb::WatchCreateRequest create;
  create.set_key(url->prefix);
  create.set_range_end(controller::PrefixRangeEnd(url->prefix));
  create.set_start_revision(from);
  auto watch = (*etcd)->Watch(create);
  int64_t until = 0;  // the newest change under the prefix
  {
    etcdserverpb::RangeRequest newest;
    newest.set_key(url->prefix);
    newest.set_range_end(controller::PrefixRangeEnd(url->prefix));
    newest.set_sort_target(etcdserverpb::RangeRequest::MOD);
    newest.set_sort_order(etcdserverpb::RangeRequest::DESCEND);
    newest.set_limit(1);
    auto r = (*etcd)->Range(newest);
    ASSERT_OK(r.status());
    ASSERT_EQ(r->kvs_size(), 1);
    until = r->kvs(0).mod_revision();
  }
  std::map<int64_t, std::string> writer;  // revision -> stamp
  std::set<int64_t> store_changes;
  int64_t seen = from - 1;
  while (seen < until) {
    auto batch = watch->Next(absl::Now() + absl::Seconds(10));
    ASSERT_OK(batch.status());
    for (const auto& e : batch->events()) {
      seen = std::max(seen, e.kv().mod_revision());
      if (e.kv().key() == url->prefix + "writer") {
        writer[e.kv().mod_revision()] = e.kv().value();
      } else if (e.kv().key().rfind(url->prefix + "store/", 0) == 0) {
        store_changes.insert(e.kv().mod_revision());
      }
    }
  }
  watch->Cancel();
  EXPECT_FALSE(store_changes.empty());  // the new leader finished the job
  const std::string new_stamp =
      absl::StrCat(cluster_->group_controller_address(leader), " term ", term);
  for (int64_t rev : store_changes) {
    ASSERT_TRUE(writer.count(rev)) << "revision " << rev << " unstamped";
    EXPECT_EQ(writer[rev], new_stamp) << "revision " << rev;
  }
  for (const auto& [rev, stamp] : writer) {
    EXPECT_EQ(stamp.find(absl::StrCat(" term ", old_term)), std::string::npos)
        << "the deposed leader wrote at revision " << rev << ": " << stamp;
  }
}

// A garbage collection waiting for a running snapshot's publishes when the
// leader dies: the new leader resumes both (the collection takes its own
// lock over); the collection retried with its key is the same job, the
// snapshot commits once and reads back whole after the collection.
TEST_F(HaTest, LeaderKilledMidGcAFollowerFinishesBoth) {
  const int old = cluster_->LeaderIndex();
  ASSERT_GE(old, 0);
  auto id = cluster_->CreateSnapshot();
  ASSERT_OK(id.status());
  ASSERT_TRUE(
      PollUntil([&] { return Published(*id) >= 3; }, absl::Seconds(60)));
  // The collection waits for the snapshot's publishes; its call blocks.
  // It waits only while publishes are registered, and may be over before
  // it is seen running (seen under ASan: done in 137 ms, deleting nothing
  // the snapshot uses), so it is asked again under a new key until one is
  // seen RUNNING.
  CollectGarbageRequest gc;
  gc.set_grace_seconds(0);
  const std::string leader_address = cluster_->group_controller_address(old);
  std::string gc_id;
  int asked = 0;
  std::thread first;
  while (gc_id.empty() && asked < 10 && Published(*id) < kNodes * kPerNode) {
    ++asked;
    gc.set_request_id(absl::StrCat("ha-test-gc-", asked));
    auto returned = std::make_shared<std::atomic<bool>>(false);
    first = std::thread([gc, leader_address, returned] {
      auto stub = AdminService::NewStub(MakeChannel(leader_address));
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(120));
      CollectGarbageResponse r;
      stub->CollectGarbage(&ctx, gc, &r);  // cut off by the kill
      *returned = true;
    });
    PollUntil(
        [&] {
          auto gcs = GcJobs();
          if (gcs.ok()) {
            for (const auto& s : *gcs) {
              if (s.state() == SNAPSHOT_STATE_RUNNING) {
                gc_id = s.snapshot_id();
              }
            }
          }
          return !gc_id.empty() || *returned;
        },
        absl::Seconds(30));
    if (gc_id.empty()) first.join();
  }
  if (gc_id.empty() || Published(*id) >= kNodes * kPerNode) {
    ASSERT_OK(cluster_->StopGroupController(old, SIGKILL).status());
    if (first.joinable()) first.join();
    FAIL() << "no collection was seen waiting for the snapshot (" << asked
           << " asked)";
  }
  ASSERT_OK(cluster_->StopGroupController(old, SIGKILL).status());
  first.join();
  const int leader = WaitForNewLeader(old, absl::Seconds(20));
  ASSERT_GE(leader, 0);
  // Retried with its key until a leader serves: the same collection,
  // answered once it is done.
  CollectGarbageResponse done;
  grpc::Status retried;
  ASSERT_TRUE(PollUntil(
      [&] {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(120));
        retried = cluster_->admin()->CollectGarbage(&ctx, gc, &done);
        return retried.error_code() != grpc::StatusCode::UNAVAILABLE;
      },
      absl::Seconds(150)));
  ASSERT_TRUE(retried.ok()) << retried.error_message();
  EXPECT_EQ(done.gc_id(), gc_id);
  ExpectCommittedOnce(*id);
  EXPECT_EQ(PublishedOnNodes(), kNodes * kPerNode);
  auto gcs = GcJobs();
  ASSERT_OK(gcs.status());
  ASSERT_EQ(gcs->size(), static_cast<size_t>(asked));
  for (const auto& g : *gcs) {
    EXPECT_EQ(g.state(), SNAPSHOT_STATE_COMMITTED) << g.snapshot_id();
  }
  // Nothing the snapshot needs was collected: a deep verify on the nodes
  // opens every partition's checkpoint from the repository.
  VerifySnapshotRequest verify;
  verify.set_snapshot_id(*id);
  verify.set_deep(true);
  VerifySnapshotResponse checked;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::seconds(120));
  grpc::Status v = cluster_->admin()->VerifySnapshot(&ctx, verify, &checked);
  ASSERT_TRUE(v.ok()) << v.error_message();
  auto verified =
      cluster_->WaitForSnapshot(checked.verify_id(), absl::Seconds(120));
  ASSERT_OK(verified.status());
  EXPECT_EQ(verified->state(), SNAPSHOT_STATE_COMMITTED) << verified->error();
}

// Every controller of the group stopped and started again: the group's
// state, read through the admin API, is what it was (jobs, schedules,
// pins), since all of it lives in etcd.
TEST_F(HaTest, RestartingEveryControllerKeepsTheSameState) {
  auto id = cluster_->CreateSnapshot();
  ASSERT_OK(id.status());
  ASSERT_OK(cluster_->WaitForSnapshot(*id, absl::Seconds(120)).status());
  {
    grpc::ClientContext ctx;
    PinSnapshotRequest pin;
    pin.set_snapshot_id(*id);
    pin.set_pinned(true);
    PinSnapshotResponse r;
    ASSERT_TRUE(cluster_->admin()->PinSnapshot(&ctx, pin, &r).ok());
  }
  {
    grpc::ClientContext ctx;
    CreateScheduleRequest create;
    create.mutable_schedule()->set_name("nightly");
    create.mutable_schedule()->set_cron("0 3 * * *");
    CreateScheduleResponse r;
    ASSERT_TRUE(cluster_->admin()->CreateSchedule(&ctx, create, &r).ok());
  }
  auto state = [&]() -> absl::StatusOr<std::string> {
    std::string out;
    for (JobType type : {JOB_TYPE_SNAPSHOT, JOB_TYPE_RESTORE}) {
      grpc::ClientContext ctx;
      ListSnapshotsRequest req;
      req.set_type(type);
      ListSnapshotsResponse list;
      grpc::Status s = cluster_->admin()->ListSnapshots(&ctx, req, &list);
      if (!s.ok()) return absl::UnavailableError(s.error_message());
      out += list.DebugString();
    }
    GetSnapshotResponse job;
    {
      grpc::ClientContext ctx;
      GetSnapshotRequest req;
      req.set_snapshot_id(*id);
      grpc::Status s = cluster_->admin()->GetSnapshot(&ctx, req, &job);
      if (!s.ok()) return absl::UnavailableError(s.error_message());
    }
    out += job.DebugString();
    grpc::ClientContext ctx;
    ListSchedulesResponse schedules;
    grpc::Status s = cluster_->admin()->ListSchedules(&ctx, {}, &schedules);
    if (!s.ok()) return absl::UnavailableError(s.error_message());
    return out + schedules.DebugString();
  };
  auto before = state();
  ASSERT_OK(before.status());
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK(cluster_->StopGroupController(i, SIGTERM).status());
  }
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK(cluster_->StartGroupController(i));
  }
  absl::StatusOr<std::string> after;
  ASSERT_TRUE(PollUntil(
      [&] {
        after = state();
        return after.ok();
      },
      absl::Seconds(30)));
  EXPECT_EQ(*after, *before);
}

// A schedule keeps its rhythm across a failover: every due time runs once
// (one job per due time, whichever leader started it), none is missed, no
// tick is skipped.
TEST_F(HaTest, AScheduleKeepsItsRhythmAcrossAFailover) {
  constexpr int kEverySeconds = 5;  // longer than a failover (lease + ~1 s)
  CreateScheduleRequest create;
  create.mutable_schedule()->set_name("rhythm");
  create.mutable_schedule()->set_every(absl::StrCat(kEverySeconds, "s"));
  create.mutable_schedule()->add_partition_ids(0);
  {
    grpc::ClientContext ctx;
    CreateScheduleResponse r;
    grpc::Status s = cluster_->admin()->CreateSchedule(&ctx, create, &r);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  auto schedule = [&]() -> absl::StatusOr<Schedule> {
    grpc::ClientContext ctx;
    ListSchedulesResponse r;
    grpc::Status s = cluster_->admin()->ListSchedules(&ctx, {}, &r);
    if (!s.ok()) return absl::UnavailableError(s.error_message());
    if (r.schedules_size() != 1) return absl::NotFoundError("no schedule");
    return r.schedules(0);
  };
  auto runs = [&] {
    auto s = schedule();
    return s.ok() ? static_cast<int>(s->runs()) : -1;
  };
  ASSERT_TRUE(PollUntil([&] { return runs() >= 2; }, absl::Seconds(30)));
  // Strike just after a run, so the failover spans the next due time.
  const int old = cluster_->LeaderIndex();
  ASSERT_GE(old, 0);
  ASSERT_OK(cluster_->StopGroupController(old, SIGKILL).status());
  ASSERT_GE(WaitForNewLeader(old, absl::Seconds(20)), 0);
  ASSERT_TRUE(PollUntil([&] { return runs() >= 5; }, absl::Seconds(60)));
  auto s = schedule();
  ASSERT_OK(s.status());
  EXPECT_EQ(s->skipped(), 0u) << s->last_skip_reason();
  // Every job of the schedule, by the due time it ran for.
  ListSnapshotsResponse list;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(cluster_->admin()->ListSnapshots(&ctx, {}, &list).ok());
  }
  std::vector<int64_t> due;
  for (const auto& summary : list.snapshots()) {
    if (summary.schedule() != "rhythm") continue;
    auto job = cluster_->GetSnapshot(summary.snapshot_id());
    ASSERT_OK(job.status());
    const std::string prefix = "schedule/rhythm/";
    ASSERT_EQ(job->request_id().rfind(prefix, 0), 0u) << job->request_id();
    due.push_back(std::stoll(job->request_id().substr(prefix.size())));
  }
  std::sort(due.begin(), due.end());
  ASSERT_GE(due.size(), 5u);
  EXPECT_EQ(static_cast<int>(due.size()), static_cast<int>(s->runs()));
  for (size_t i = 1; i < due.size(); ++i) {
    // Neither doubled (0) nor missed (twice the interval).
    EXPECT_EQ(due[i] - due[i - 1], kEverySeconds * 1000000LL) << "run " << i;
  }
}

class HaQuorumTest : public HaTest {
 protected:
  int EtcdMembers() const override { return 3; }
};

TEST_F(HaQuorumTest, EtcdLosingQuorumStopsTheLeaderAndEverythingResumes) {
  const int old = cluster_->LeaderIndex();
  ASSERT_GE(old, 0);
  auto id = cluster_->CreateSnapshot();
  ASSERT_OK(id.status());
  ASSERT_TRUE(
      PollUntil([&] { return Published(*id) >= 6; }, absl::Seconds(60)));
  // Two of three etcd members gone: no quorum.
  ASSERT_OK((*etcd_)->Kill(1));
  ASSERT_OK((*etcd_)->Kill(2));
  const absl::Time lost = absl::Now();
  // The leader stops within its lease, counted from when etcd stopped
  // renewing it: etcd's own leader keeps renewing leases until raft's
  // check-quorum deposes it, which takes one to two election timeouts
  // (1 s each by default; CI once saw 3.8 s here in all).
  ASSERT_TRUE(WaitForStepDown(old, absl::Seconds(15)));
  EXPECT_LT(absl::Now() - lost,
            absl::Milliseconds(kLeaseMs + 2 * kEtcdElectionTimeoutMs + 500));
  // Admin writes fail promptly, on every controller, and say why.
  for (int i = 0; i < 3; ++i) {
    auto stub = AdminService::NewStub(
        MakeChannel(cluster_->group_controller_address(i)));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(20));
    const absl::Time start = absl::Now();
    CreateSnapshotResponse r;
    grpc::Status s = stub->CreateSnapshot(&ctx, {}, &r);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE)
        << i << ": " << s.error_message();
    EXPECT_LT(absl::Now() - start, absl::Seconds(10)) << i;
  }
  // etcd back (no controller restarted): a leader again, and the snapshot
  // commits with every partition once.
  ASSERT_OK((*etcd_)->Restart(1));
  ASSERT_OK((*etcd_)->Restart(2));
  ASSERT_TRUE(PollUntil([&] { return cluster_->LeaderIndex() >= 0; },
                        absl::Seconds(60)));
  ExpectCommittedOnce(*id);
  EXPECT_EQ(PublishedOnNodes(), kNodes * kPerNode);
}

}  // namespace
}  // namespace shutter
