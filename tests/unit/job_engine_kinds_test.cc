#include <filesystem>
#include <fstream>
#include <map>

#include "common/error_reason.h"
#include "controller/delete_kind.h"
#include "controller/job_engine.h"
#include "controller/job_states.h"
#include "controller/kinds.h"
#include "controller/maintenance.h"
#include "controller/restore_kind.h"
#include "controller/retry_policy.h"
#include "controller/schedules.h"
#include "controller/snapshot_kind.h"
#include "controller/verify_kind.h"
#include "gtest/gtest.h"
#include "snapshot/blob_store.h"
#include "snapshot/repository.h"
#include "testing/process.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter::controller {
namespace {

using ::shutter::testing::StatusIs;
using shutter::v1::CreateCheckpointRequest;
using shutter::v1::CreateCheckpointResponse;

// A transport whose calls complete only when the test says so.
class FakeTransport : public NodeTransport {
 public:
  struct Call {
    std::string address;
    CreateCheckpointRequest request;
    Callback done;
  };

  void CreateCheckpoint(const std::string& address,
                        const CreateCheckpointRequest& request,
                        absl::Duration timeout, Callback done) override {
    absl::MutexLock l(&mu_);
    calls_.push_back({address, request, std::move(done)});
    int n = 0;
    for (const auto& c : calls_) n += c.address == address;
    peak_[address] = std::max(peak_[address], n);
  }

  void CancelCheckpoints(const std::string& address,
                         const std::string& snapshot_id) override {
    absl::MutexLock l(&mu_);
    cancels_.push_back(address + " " + snapshot_id);
  }
  std::vector<std::string> cancels() {
    absl::MutexLock l(&mu_);
    return cancels_;
  }

  // Restores are held until the test answers them (TakeRestore).
  struct RestoreCall {
    std::string address;
    shutter::v1::RestorePartitionRequest request;
    RestoreCallback done;
  };
  void RestorePartition(const std::string& address,
                        const shutter::v1::RestorePartitionRequest& request,
                        absl::Duration timeout, RestoreCallback done) override {
    absl::MutexLock l(&mu_);
    restores_.push_back({address, request, std::move(done)});
  }
  void CancelRestores(const std::string& address,
                      const std::string& restore_id) override {
    absl::MutexLock l(&mu_);
    cancels_.push_back(address + " " + restore_id);
  }
  // Waits (bounded) until `n` restores are outstanding.
  bool WaitForRestores(size_t n) {
    absl::MutexLock l(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return restores_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(10));
  }
  bool HasRestore() {
    absl::MutexLock l(&mu_);
    return !restores_.empty();
  }
  RestoreCall TakeRestore() {
    absl::MutexLock l(&mu_);
    RestoreCall c = std::move(restores_.front());
    restores_.erase(restores_.begin());
    return c;
  }

  // Verifies are answered at once with the node's shallow check against
  // `verify_repo` (set by the fixture), as a node would.
  void VerifyPartition(const std::string& address,
                       const shutter::v1::VerifyPartitionRequest& request,
                       absl::Duration timeout, VerifyCallback done) override {
    auto m = verify_repo->ReadPartitionManifest(request.snapshot_id(),
                                                request.partition_id());
    if (!m.ok()) {
      std::move(done)(WithReason(m.status(), ErrorReason::kCheckpointFailed));
      return;
    }
    if (absl::Status s = verify_repo->VerifyPartition(*m); !s.ok()) {
      std::move(done)(WithReason(
          absl::Status(
              s.code(),
              absl::StrCat("snapshot ", request.snapshot_id(), " partition ",
                           request.partition_id(), ": ", s.message())),
          ErrorReason::kCheckpointFailed));
      return;
    }
    shutter::v1::VerifyPartitionResponse r;
    r.set_files_checked(m->files_size());
    r.set_bytes_checked(m->total_bytes());
    *r.mutable_manifest() = *std::move(m);
    std::move(done)(r);
  }
  snapshot::Repository* verify_repo = nullptr;

  // Answers every held call (checkpoints and restores) with CANCELLED, as
  // the real transport does, so no callback (holding a scheduler slot)
  // outlives the engine.
  void Shutdown() override {
    std::vector<Call> calls;
    std::vector<RestoreCall> restores;
    {
      absl::MutexLock l(&mu_);
      calls.swap(calls_);
      restores.swap(restores_);
    }
    for (auto& c : calls) std::move(c.done)(absl::CancelledError("shutdown"));
    for (auto& r : restores) {
      std::move(r.done)(absl::CancelledError("shutdown"));
    }
  }

  // Waits (bounded) until `n` calls are outstanding.
  bool WaitForCalls(size_t n) {
    absl::MutexLock l(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return calls_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(10));
  }

  // Removes and returns the oldest outstanding call (to `address` if given).
  Call Take(const std::string& address = "") {
    absl::MutexLock l(&mu_);
    for (auto it = calls_.begin(); it != calls_.end(); ++it) {
      if (address.empty() || it->address == address) {
        Call c = std::move(*it);
        calls_.erase(it);
        return c;
      }
    }
    ADD_FAILURE() << "no outstanding call to " << address;
    return {};
  }

  size_t Outstanding(const std::string& address) {
    absl::MutexLock l(&mu_);
    size_t n = 0;
    for (const auto& c : calls_) n += c.address == address;
    return n;
  }
  int Peak(const std::string& address) {
    absl::MutexLock l(&mu_);
    return peak_[address];
  }

 private:
  absl::Mutex mu_;
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> peak_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> cancels_ ABSL_GUARDED_BY(mu_);
  std::vector<RestoreCall> restores_ ABSL_GUARDED_BY(mu_);
};

class JobEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto repo = snapshot::OpenRepository(tmp_.Sub("repo"));
    ASSERT_OK(repo);
    repo_ = std::move(repo).value();
    transport_.verify_repo = repo_.get();
    auto store = RocksDbJobStore::Open(tmp_.Sub("jobs"));
    ASSERT_OK(store);
    store_ = std::move(store).value();
    std::filesystem::create_directories(tmp_.Sub("ckpt"));
    std::ofstream(tmp_.Sub("ckpt/000001.sst")) << "data";
    // Stored per partition (not content-addressed), unlike the SST.
    std::ofstream(tmp_.Sub("ckpt/CURRENT")) << "MANIFEST-000001\n";
    StartCoordinator();
  }

  void StartCoordinator() {
    timer_ = std::make_unique<ManualTimer>(&clock_);
    JobEngine::Options o;
    o.rpc_timeout = absl::Seconds(30);
    o.max_attempts = 3;
    o.retry_base = absl::Seconds(1);
    o.retry_max = absl::Seconds(4);
    o.leader_poll = absl::Milliseconds(200);
    o.job_timeout = absl::Minutes(10);
    o.task_history_jobs = task_history_jobs_;
    KindContext kinds;
    kinds.transport = &transport_;
    kinds.repo = repo_.get();
    kinds.registry = &registry_;
    kinds.rpc_timeout = o.rpc_timeout;
    kinds.on_snapshot_commit = [this](const std::string& id) {
      if (on_commit_) on_commit_(id);
    };
    kinds.on_verify_commit = [this](const std::string& id) {
      if (on_commit_) on_commit_(id);
    };
    std::vector<std::unique_ptr<JobKind>> registered;
    for (auto& kind : StandardKinds(kinds)) {
      if (!only_type_ || kind->type() == *only_type_) {
        registered.push_back(std::move(kind));
      }
    }
    auto c =
        JobEngine::Create(o, std::move(registered), &registry_, store_.get(),
                          repo_.get(), timer_.get(), &clock_);
    ASSERT_OK(c);
    coordinator_ = std::move(c).value();
  }

  void StopCoordinator() {
    coordinator_->Shutdown();
    transport_.Shutdown();
    timer_->Shutdown();
    coordinator_.reset();
  }

  // Moves the fake clock forward and fires the timers that became due.
  void Advance(absl::Duration d) {
    // Actions follow durable writes on the committer's thread: let the
    // ones due now (e.g. scheduling a retry) happen first.
    coordinator_->WaitForQuiescenceForTesting();
    clock_.Advance(d);
    timer_->RunDue();
  }

  void TearDown() override {
    if (coordinator_) StopCoordinator();
  }

  // Node `node` leads partitions [first, first+count) at `epoch`.
  void Beat(const std::string& node, uint32_t first, uint32_t count,
            uint32_t capacity, uint64_t epoch = 1) {
    shutter::v1::HeartbeatRequest r;
    r.set_node_id(node);
    r.set_address(node + ":7100");
    r.set_checkpoint_capacity(capacity);
    r.mutable_instance()->set_instance_id(node + "-inst");
    r.mutable_instance()->set_start_count(1);
    for (uint32_t p = first; p < first + count; ++p) {
      auto* hp = r.add_partitions();
      hp->set_partition_id(p);
      hp->set_role(shutter::v1::PARTITION_ROLE_LEADER);
      hp->set_leader_epoch(epoch);
      hp->set_approximate_size_bytes(1000 + p);
    }
    ASSERT_OK(registry_.Heartbeat(r));
    coordinator_->SetNodeLimit(node, static_cast<int>(capacity));
  }

  // Completes `call` as a node would: publish, then answer with the
  // stored manifest's digest and size (`with_digest`; false: as a node
  // from before digests, which the controller checks by reading back).
  void Publish(FakeTransport::Call call, uint64_t applied_index = 5,
               bool with_digest = true) {
    std::move(call.done)(PublishedAnswer(call, applied_index, with_digest));
  }
  CreateCheckpointResponse PublishedAnswer(const FakeTransport::Call& call,
                                           uint64_t applied_index = 5,
                                           bool with_digest = true) {
    shutter::v1::PartitionManifest h;
    h.set_snapshot_id(call.request.snapshot_id());
    h.set_partition_id(call.request.partition_id());
    h.set_node_id(call.address.substr(0, call.address.find(':')));
    h.set_leader_epoch(call.request.expected_leader_epoch());
    h.set_applied_index(applied_index);
    snapshot::PublishStats stats;
    auto m = repo_->PublishPartition(h, tmp_.Sub("ckpt"), nullptr, &stats);
    EXPECT_OK(m);
    CreateCheckpointResponse resp;
    if (m.ok()) *resp.mutable_manifest() = *m;
    resp.set_manifest_path(snapshot::Repository::PartitionManifestPath(
        h.snapshot_id(), h.partition_id()));
    if (with_digest) {
      resp.set_manifest_sha256(stats.manifest.sha256);
      resp.set_manifest_bytes(stats.manifest.size);
    }
    return resp;
  }

  // Takes a snapshot of what is registered, publishes its one partition
  // and returns its id once COMMITTED (test failure otherwise).
  std::string CommitOne() {
    auto id = CreateSnapshot({});
    EXPECT_OK(id);
    if (!id.ok()) return "";
    EXPECT_TRUE(transport_.WaitForCalls(1));
    Publish(transport_.Take());
    EXPECT_EQ(Get(*id).state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
    return *id;
  }

  // One snapshot of partition 0 on node "a", committed; then the engine is
  // stopped. Returns the job as it was (empty on failure).
  shutter::v1::Snapshot CommitOneAndStop() {
    Beat("a", 0, 1, 1);
    const std::string id = CommitOne();
    shutter::v1::Snapshot snap = id.empty() ? shutter::v1::Snapshot() : Get(id);
    StopCoordinator();
    return snap;
  }

  shutter::v1::Snapshot Get(const std::string& id) {
    coordinator_->WaitForQuiescenceForTesting();
    auto s = coordinator_->GetSnapshot(id);
    EXPECT_OK(s);
    return s.ok() ? *s : shutter::v1::Snapshot();
  }

  testing::TempDir tmp_;
  FakeClock clock_;
  NodeRegistry registry_{{absl::Seconds(10), "", ""}, &clock_};
  FakeTransport transport_;
  std::unique_ptr<ManualTimer> timer_;
  std::unique_ptr<snapshot::Repository> repo_;
  // Local path of a repository key (the repository is a directory here).
  std::string Abs(const std::string& key) const {
    return repo_->blob_store()->LocalPath(key);
  }
  std::unique_ptr<RocksDbJobStore> store_;
  std::unique_ptr<JobEngine> coordinator_;
  std::function<void(const std::string&)> on_commit_;
  // The kinds' front doors, on this engine.
  absl::StatusOr<std::string> CreateSnapshot(
      const shutter::v1::CreateSnapshotRequest& request) {
    return StartSnapshot(*coordinator_, request);
  }
  absl::StatusOr<shutter::v1::RestoreSnapshotResponse> RestoreSnapshot(
      const shutter::v1::RestoreSnapshotRequest& request) {
    return StartRestore(*coordinator_, *repo_, request);
  }
  // A job whose tasks the fake transport answers at once, on the engine's
  // dispatch threads: waits (bounded) for it to end.
  shutter::v1::Snapshot WaitEnded(const std::string& id) {
    shutter::v1::Snapshot job = Get(id);
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (!IsFinished(job.state()) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(1));
      job = Get(id);
    }
    EXPECT_TRUE(IsFinished(job.state())) << StateName(job.state());
    return job;
  }
  // Runs a verify job of `snapshot_id` to its end (the fake transport
  // answers verifies at once) and sums it up as the serial verify of
  // earlier versions answered.
  absl::StatusOr<shutter::v1::VerifySnapshotResponse> VerifySnapshot(
      const std::string& snapshot_id) {
    shutter::v1::VerifySnapshotRequest req;
    req.set_snapshot_id(snapshot_id);
    auto id = StartVerify(*coordinator_, *repo_, req);
    if (!id.ok()) return id.status();
    shutter::v1::Snapshot job = WaitEnded(*id);
    shutter::v1::VerifySnapshotResponse out;
    out.set_verify_id(*id);
    out.set_partitions_checked(job.partitions_size());
    for (const auto& t : job.partitions()) {
      if (t.state() == shutter::v1::PARTITION_TASK_STATE_PUBLISHED) {
        out.set_files_checked(out.files_checked() + t.file_count());
        out.set_bytes_checked(out.bytes_checked() + t.total_bytes());
      } else {
        auto* p = out.add_problems();
        p->set_partition_id(t.partition_id());
        p->set_error(t.last_error());
      }
    }
    out.set_ok(job.state() == shutter::v1::SNAPSHOT_STATE_COMMITTED);
    return out;
  }
  // Options::task_history_jobs of the next StartCoordinator.
  int task_history_jobs_ = 50;
  // If set, StartCoordinator registers only the kind of this type.
  std::optional<shutter::v1::JobType> only_type_;
};

TEST_F(JobEngineTest, RunsInParallelWithinLimitsAndCommits) {
  Beat("a", 0, 6, 2);
  Beat("b", 6, 6, 2);
  shutter::v1::CreateSnapshotRequest req;
  req.set_label("t");
  auto id = CreateSnapshot(req);
  ASSERT_OK(id);
  // Both nodes get exactly their capacity at once; the rest wait.
  ASSERT_TRUE(transport_.WaitForCalls(4));
  EXPECT_EQ(transport_.Outstanding("a:7100"), 2u);
  EXPECT_EQ(transport_.Outstanding("b:7100"), 2u);
  auto stats = coordinator_->NodeStats();
  EXPECT_EQ(stats["a"].in_flight, 2);
  EXPECT_EQ(stats["a"].queued, 4);
  // Largest partitions (by reported size) go first on each node.
  EXPECT_EQ(Get(*id).state(), shutter::v1::SNAPSHOT_STATE_RUNNING);
  for (int done = 0; done < 12; ++done) {
    ASSERT_TRUE(transport_.WaitForCalls(1));
    Publish(transport_.Take());
  }
  EXPECT_EQ(transport_.Peak("a:7100"), 2);
  EXPECT_EQ(transport_.Peak("b:7100"), 2);
  auto snap = Get(*id);
  EXPECT_EQ(snap.state(), shutter::v1::SNAPSHOT_STATE_COMMITTED)
      << snap.error();
  auto cm = repo_->ReadClusterManifest(*id);
  ASSERT_OK(cm);
  ASSERT_EQ(cm->partitions_size(), 12);
  EXPECT_EQ(cm->label(), "t");
  EXPECT_EQ(cm->partitions(7).node_id(), "b");
  EXPECT_EQ(cm->partitions(7).applied_index(), 5u);
  for (const auto& t : snap.partitions()) {
    EXPECT_EQ(t.state(), shutter::v1::PARTITION_TASK_STATE_PUBLISHED);
    EXPECT_EQ(t.attempts(), 1u);
  }
}

TEST_F(JobEngineTest, LargestPartitionFirstOnANode) {
  Beat("a", 0, 4, 1);
  auto id = CreateSnapshot({});
  ASSERT_OK(id);
  std::vector<uint32_t> order;
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(transport_.WaitForCalls(1));
    auto c = transport_.Take();
    order.push_back(c.request.partition_id());
    Publish(std::move(c));
  }
  // The job is submitted as one batch, so even the first is the largest.
  EXPECT_EQ(order, (std::vector<uint32_t>{3, 2, 1, 0}));
}

TEST_F(JobEngineTest, OneFailureFailsTheJobAndWritesNoManifest) {
  Beat("a", 0, 3, 3);
  auto id = CreateSnapshot({});
  ASSERT_OK(id);
  ASSERT_TRUE(transport_.WaitForCalls(3));
  Publish(transport_.Take());
  auto failing = transport_.Take();
  uint32_t failed_partition = failing.request.partition_id();
  std::move(failing.done)(absl::InternalError("disk on fire"));
  Publish(transport_.Take());
  auto snap = Get(*id);
  EXPECT_EQ(snap.state(), shutter::v1::SNAPSHOT_STATE_FAILED);
  EXPECT_NE(snap.error().find("disk on fire"), std::string::npos)
      << snap.error();
  EXPECT_NE(snap.error().find(absl::StrCat("partition ", failed_partition)),
            std::string::npos);
  EXPECT_THAT(repo_->ReadClusterManifest(*id),
              StatusIs(absl::StatusCode::kNotFound));
  // The two partitions it did publish are rolled back.
  EXPECT_TRUE(snap.rolled_back());
  EXPECT_FALSE(std::filesystem::exists(Abs("snapshots/" + *id)));
}

TEST_F(JobEngineTest, AllowPartialCommitsWhatSucceeded) {
  Beat("a", 0, 3, 3);
  shutter::v1::CreateSnapshotRequest req;
  req.set_allow_partial(true);
  auto id = CreateSnapshot(req);
  ASSERT_OK(id);
  ASSERT_TRUE(transport_.WaitForCalls(3));
  Publish(transport_.Take());
  auto failing = transport_.Take();
  const uint32_t missing = failing.request.partition_id();
  std::move(failing.done)(absl::DataLossError("bad sector"));
  Publish(transport_.Take());
  auto snap = Get(*id);
  EXPECT_EQ(snap.state(), shutter::v1::SNAPSHOT_STATE_PARTIAL);
  EXPECT_NE(snap.error().find("1 of 3 partitions missing"), std::string::npos)
      << snap.error();
  auto cm = repo_->ReadClusterManifest(*id);
  ASSERT_OK(cm);
  EXPECT_EQ(cm->partitions_size(), 2);
  ASSERT_EQ(cm->missing_size(), 1);
  EXPECT_EQ(cm->missing(0).partition_id(), missing);
  EXPECT_NE(cm->missing(0).reason().find("bad sector"), std::string::npos);
  EXPECT_FALSE(snap.rolled_back());
  auto v = VerifySnapshot(*id);
  ASSERT_OK(v);
  EXPECT_TRUE(v->ok());
  EXPECT_EQ(v->partitions_checked(), 2u);
  // PARTIAL is final: it cannot be cancelled, and a restart leaves it be.
  EXPECT_THAT(coordinator_->CancelSnapshot(*id),
              StatusIs(absl::StatusCode::kFailedPrecondition, "PARTIAL"));
  const std::string before = Get(*id).SerializeAsString();
  StopCoordinator();
  StartCoordinator();
  EXPECT_EQ(Get(*id).SerializeAsString(), before);
  EXPECT_OK(repo_->ReadClusterManifest(*id));
}

TEST_F(JobEngineTest, AllowPartialWithNothingPublishedFails) {
  Beat("a", 0, 1, 1);
  shutter::v1::CreateSnapshotRequest req;
  req.set_allow_partial(true);
  auto id = CreateSnapshot(req);
  ASSERT_OK(id);
  ASSERT_TRUE(transport_.WaitForCalls(1));
  std::move(transport_.Take().done)(absl::DataLossError("bad sector"));
  EXPECT_EQ(Get(*id).state(), shutter::v1::SNAPSHOT_STATE_FAILED);
  EXPECT_THAT(repo_->ReadClusterManifest(*id),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(JobEngineTest, CancelDropsQueuedAndRollsBackAfterInFlight) {
  Beat("a", 0, 4, 2);
  auto id = CreateSnapshot({});
  ASSERT_OK(id);
  ASSERT_TRUE(transport_.WaitForCalls(2));
  Publish(transport_.Take());
  ASSERT_TRUE(transport_.WaitForCalls(2));  // the next one started
  auto cancelled_answer = coordinator_->CancelSnapshot(*id);
  ASSERT_OK(cancelled_answer);
  EXPECT_EQ(cancelled_answer->snapshot().state(),
            shutter::v1::SNAPSHOT_STATE_CANCELLED);
  EXPECT_EQ(cancelled_answer->summary().partitions_running(), 2u);
  auto snap = Get(*id);
  EXPECT_FALSE(snap.rolled_back());  // two checkpoints still in flight
  int running = 0, cancelled = 0;
  for (const auto& t : snap.partitions()) {
    running += t.state() == shutter::v1::PARTITION_TASK_STATE_RUNNING;
    cancelled += t.state() == shutter::v1::PARTITION_TASK_STATE_CANCELLED;
  }
  EXPECT_EQ(running, 2);
  EXPECT_EQ(cancelled, 2);  // the published one and the queued one
  EXPECT_TRUE(std::filesystem::exists(Abs("snapshots/" + *id)));
  // The node running them was asked to stop them.
  EXPECT_EQ(transport_.cancels(), std::vector<std::string>{"a:7100 " + *id});
  Publish(transport_.Take());  // finishes on the node after the cancel
  EXPECT_FALSE(Get(*id).rolled_back());
  std::move(transport_.Take().done)(absl::UnavailableError("gone"));
  EXPECT_TRUE(Get(*id).rolled_back());
  EXPECT_FALSE(std::filesystem::exists(Abs("snapshots/" + *id)));
  EXPECT_THAT(repo_->ReadClusterManifest(*id),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(transport_.Outstanding("a:7100"), 0u);  // nothing else started
  EXPECT_OK(coordinator_->CancelSnapshot(*id));     // idempotent
  EXPECT_THAT(coordinator_->CancelSnapshot("nope"),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(JobEngineTest, VerifyFindsTheCorruptFileAndCancelRefuses) {
  Beat("a", 0, 2, 2);
  auto id = CreateSnapshot({});
  ASSERT_OK(id);
  ASSERT_TRUE(transport_.WaitForCalls(2));
  Publish(transport_.Take());
  Publish(transport_.Take());
  ASSERT_EQ(Get(*id).state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
  auto v = VerifySnapshot(*id);
  ASSERT_OK(v);
  EXPECT_TRUE(v->ok());
  EXPECT_EQ(v->partitions_checked(), 2u);
  EXPECT_EQ(v->files_checked(), 4u);
  auto pm = repo_->ReadPartitionManifest(*id, 1);
  ASSERT_OK(pm);
  ASSERT_EQ(pm->files(0).name(), "000001.sst");
  ASSERT_EQ(pm->files(1).name(), "CURRENT");
  std::ofstream(Abs(pm->files(1).object_key())) << "MANIFEST-000002\n";
  v = VerifySnapshot(*id);
  ASSERT_OK(v);
  EXPECT_FALSE(v->ok());
  ASSERT_EQ(v->problems_size(), 1);
  EXPECT_EQ(v->problems(0).partition_id(), 1u);
  EXPECT_NE(v->problems(0).error().find("00001/CURRENT: sha256"),
            std::string::npos)
      << v->problems(0).error();
  EXPECT_THAT(coordinator_->CancelSnapshot(*id),
              StatusIs(absl::StatusCode::kFailedPrecondition, "COMMITTED"));
}

TEST_F(JobEngineTest, AnswerWithWrongEpochIsNeverCommitted) {
  Beat("a", 0, 1, 1, /*epoch=*/4);
  auto id = CreateSnapshot({});
  ASSERT_OK(id);
  for (int attempt = 1; attempt <= 3; ++attempt) {
    ASSERT_TRUE(transport_.WaitForCalls(1));
    auto call = transport_.Take();
    EXPECT_EQ(call.request.expected_leader_epoch(), 4u);
    CreateCheckpointResponse resp;  // a node answering from epoch 3
    resp.mutable_manifest()->set_snapshot_id(*id);
    resp.mutable_manifest()->set_partition_id(0);
    resp.mutable_manifest()->set_leader_epoch(3);
    std::move(call.done)(resp);
    EXPECT_EQ(Get(*id).partitions(0).attempts(),
              static_cast<uint32_t>(attempt));
    Beat("a", 0, 1, 1, /*epoch=*/4);  // still alive, still the leader
    Advance(absl::Seconds(5));        // past any backoff
  }
  auto snap = Get(*id);
  EXPECT_EQ(snap.state(), shutter::v1::SNAPSHOT_STATE_FAILED);
  EXPECT_NE(snap.partitions(0).last_error().find("epoch 3, expected 4"),
            std::string::npos)
      << snap.partitions(0).last_error();
  EXPECT_NE(snap.partitions(0).last_error().find("gave up after 3 attempts"),
            std::string::npos);
  EXPECT_THAT(repo_->ReadClusterManifest(*id),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(JobEngineTest, TransientErrorsAreRetriedAfterABackoff) {
  Beat("a", 0, 2, 2);
  auto id = CreateSnapshot({});
  ASSERT_OK(id);
  ASSERT_TRUE(transport_.WaitForCalls(2));
  auto flaky = transport_.Take();
  const uint32_t flaky_partition = flaky.request.partition_id();
  // The node answers that it is busy (its free-space floor).
  std::move(flaky.done)(
      WithReason(absl::ResourceExhaustedError("only 10 MiB free"),
                 ErrorReason::kNodeBusy));
  Publish(transport_.Take());  // the other partition is not held up
  auto snap = Get(*id);
  EXPECT_EQ(snap.state(), shutter::v1::SNAPSHOT_STATE_RUNNING);
  const auto& t = snap.partitions(flaky_partition);
  EXPECT_EQ(t.state(), shutter::v1::PARTITION_TASK_STATE_WAITING);
  EXPECT_NE(t.last_error().find("10 MiB free"), std::string::npos);
  // Nothing is sent again before the backoff (1 s base, jitter >= 0.5).
  Advance(absl::Milliseconds(400));
  EXPECT_EQ(transport_.Outstanding("a:7100"), 0u);
  Advance(absl::Seconds(1));
  ASSERT_TRUE(transport_.WaitForCalls(1));
  Publish(transport_.Take());
  snap = Get(*id);
  EXPECT_EQ(snap.state(), shutter::v1::SNAPSHOT_STATE_COMMITTED)
      << snap.error();
  EXPECT_EQ(snap.partitions(flaky_partition).attempts(), 2u);
}

// A garbage collection holding the repository is waited for: however many
// times the node answers REPOSITORY_BUSY, no attempt is spent, and the task
// says that it waits for the collection.
TEST_F(JobEngineTest, WaitingForGarbageCollectionSpendsNoAttempt) {
  Beat("a", 0, 1, 1);
  auto id = CreateSnapshot({});
  ASSERT_OK(id);
  for (int i = 0; i < 8; ++i) {  // more than max_attempts
    ASSERT_TRUE(transport_.WaitForCalls(1));
    std::move(transport_.Take().done)(
        WithReason(absl::AbortedError("repository r is being garbage-collected "
                                      "(locks/gc); try again"),
                   ErrorReason::kRepositoryBusy));
    auto snap = Get(*id);
    ASSERT_EQ(snap.state(), shutter::v1::SNAPSHOT_STATE_RUNNING);
    const auto& t = snap.partitions(0);
    EXPECT_EQ(t.state(), shutter::v1::PARTITION_TASK_STATE_WAITING);
    EXPECT_EQ(t.attempts(), 0u);
    EXPECT_EQ(t.unreachable(), 0u);
    EXPECT_NE(t.last_error().find("waiting for a garbage collection"),
              std::string::npos)
        << t.last_error();
    Beat("a", 0, 1, 1);         // alive all along
    Advance(absl::Seconds(3));  // past the poll (2 s max, jittered)
  }
  ASSERT_TRUE(transport_.WaitForCalls(1));
  Publish(transport_.Take());
  auto snap = Get(*id);
  EXPECT_EQ(snap.state(), shutter::v1::SNAPSHOT_STATE_COMMITTED)
      << snap.error();
  EXPECT_EQ(snap.partitions(0).attempts(), 1u);
}

// Cancel keeps a restore's known outcomes: a partition swapped before the
// cancel stays restored, and so does one whose answer ("swapped") arrives
// after it; only the one that had not swapped ends CANCELLED.
TEST_F(JobEngineTest, CancelledRestoreKeepsWhatWasRestored) {
  Beat("a", 0, 3, 3);
  auto id = CreateSnapshot({});
  ASSERT_OK(id);
  ASSERT_TRUE(transport_.WaitForCalls(3));
  for (int i = 0; i < 3; ++i) Publish(transport_.Take());
  ASSERT_EQ(Get(*id).state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);

  shutter::v1::RestoreSnapshotRequest req;
  req.set_snapshot_id(*id);
  auto restore = RestoreSnapshot(req);
  ASSERT_OK(restore);
  const std::string rid = restore->restore_id();
  ASSERT_TRUE(transport_.WaitForRestores(3));
  auto answer = [&](FakeTransport::RestoreCall call, bool swapped) {
    if (!swapped) {
      std::move(call.done)(WithReason(absl::CancelledError("cancelled"),
                                      ErrorReason::kCancelled));
      return;
    }
    auto m = repo_->ReadPartitionManifest(call.request.snapshot_id(),
                                          call.request.partition_id());
    ASSERT_OK(m);
    shutter::v1::RestorePartitionResponse r;
    *r.mutable_manifest() = *m;
    r.set_leader_epoch(call.request.expected_leader_epoch() + 1);
    std::move(call.done)(r);
  };
  auto first = transport_.TakeRestore();
  const uint32_t restored_before = first.request.partition_id();
  answer(std::move(first), true);
  coordinator_->WaitForQuiescenceForTesting();
  auto cancelled = coordinator_->CancelSnapshot(rid);
  ASSERT_OK(cancelled);
  EXPECT_EQ(cancelled->snapshot().state(),
            shutter::v1::SNAPSHOT_STATE_CANCELLED);
  auto late = transport_.TakeRestore();
  const uint32_t restored_late = late.request.partition_id();
  answer(std::move(late), true);  // swapped before the cancel reached it
  auto stopped = transport_.TakeRestore();
  const uint32_t untouched = stopped.request.partition_id();
  answer(std::move(stopped), false);
  coordinator_->WaitForQuiescenceForTesting();
  auto job = Get(rid);
  EXPECT_EQ(job.state(), shutter::v1::SNAPSHOT_STATE_CANCELLED);
  EXPECT_EQ(job.partitions(restored_before).state(),
            shutter::v1::PARTITION_TASK_STATE_PUBLISHED);
  EXPECT_EQ(job.partitions(restored_late).state(),
            shutter::v1::PARTITION_TASK_STATE_PUBLISHED);
  EXPECT_EQ(job.partitions(untouched).state(),
            shutter::v1::PARTITION_TASK_STATE_CANCELLED);
  // (A cancelled snapshot keeps nothing: CancelDropsQueuedAndRollsBack...)
}

TEST_F(JobEngineTest, JobsRunThroughTheKindsTheEngineIsGiven) {
  // Two kinds of one type are refused.
  {
    auto kinds = StandardKinds({&transport_, repo_.get(), &registry_,
                                absl::Seconds(1), nullptr, nullptr});
    auto again = StandardKinds({&transport_, repo_.get(), &registry_,
                                absl::Seconds(1), nullptr, nullptr});
    kinds.push_back(std::move(again.front()));
    auto c = JobEngine::Create({}, std::move(kinds), &registry_, store_.get(),
                               repo_.get(), timer_.get(), &clock_);
    EXPECT_THAT(c.status(), StatusIs(absl::StatusCode::kInvalidArgument));
  }
  // A restore is running when the controller restarts with no restore kind
  // (an older controller, say): its job is left as it is, not resumed and
  // not listed, and the kinds it has still work. With the kind back it
  // resumes.
  Beat("a", 0, 2, 2);
  auto id = CreateSnapshot({});
  ASSERT_OK(id);
  ASSERT_TRUE(transport_.WaitForCalls(2));
  Publish(transport_.Take());
  Publish(transport_.Take());
  ASSERT_EQ(Get(*id).state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
  shutter::v1::RestoreSnapshotRequest req;
  req.set_snapshot_id(*id);
  auto restore = RestoreSnapshot(req);
  ASSERT_OK(restore);
  ASSERT_TRUE(transport_.WaitForRestores(2));
  while (transport_.HasRestore()) {  // the node is down: nothing restored
    std::move(transport_.TakeRestore().done)(
        absl::UnavailableError("connection refused"));
  }
  coordinator_->WaitForQuiescenceForTesting();
  StopCoordinator();
  only_type_ = shutter::v1::JOB_TYPE_SNAPSHOT;
  StartCoordinator();
  EXPECT_TRUE(
      coordinator_->ListSnapshots(0, shutter::v1::JOB_TYPE_RESTORE).empty());
  EXPECT_THAT(coordinator_->GetSnapshot(restore->restore_id()).status(),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(RestoreSnapshot(req).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  auto next = CreateSnapshot({});
  ASSERT_OK(next);
  ASSERT_TRUE(transport_.WaitForCalls(2));
  Publish(transport_.Take());
  Publish(transport_.Take());
  EXPECT_EQ(Get(*next).state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
  EXPECT_FALSE(transport_.HasRestore());
  StopCoordinator();
  only_type_.reset();
  StartCoordinator();
  ASSERT_TRUE(transport_.WaitForRestores(2));
  EXPECT_EQ(
      coordinator_->ListSnapshots(0, shutter::v1::JOB_TYPE_RESTORE).size(), 1u);
}

TEST_F(JobEngineTest, LeaderMoveSendsTheRetryToTheNewLeader) {
  Beat("a", 0, 1, 1, /*epoch=*/1);
  auto id = CreateSnapshot({});
  ASSERT_OK(id);
  ASSERT_TRUE(transport_.WaitForCalls(1));
  auto stale = transport_.Take();
  EXPECT_EQ(stale.address, "a:7100");
  // Leadership moves to b at epoch 2; a rejects the stale request.
  Beat("b", 0, 1, 1, /*epoch=*/2);
  std::move(stale.done)(WithReason(
      absl::FailedPreconditionError(
          "stale leader epoch for partition 0: request expects epoch 1"),
      ErrorReason::kStaleEpoch));
  Advance(absl::Seconds(5));
  ASSERT_TRUE(transport_.WaitForCalls(1));
  auto call = transport_.Take();
  EXPECT_EQ(call.address, "b:7100");
  EXPECT_EQ(call.request.expected_leader_epoch(), 2u);
  Publish(std::move(call));
  auto snap = Get(*id);
  EXPECT_EQ(snap.state(), shutter::v1::SNAPSHOT_STATE_COMMITTED)
      << snap.error();
  EXPECT_EQ(snap.partitions(0).node_id(), "b");
  EXPECT_EQ(snap.partitions(0).leader_epoch(), 2u);
  auto cm = repo_->ReadClusterManifest(*id);
  ASSERT_OK(cm);
  EXPECT_EQ(cm->partitions(0).node_id(), "b");
}

TEST_F(JobEngineTest, UnreachableNodeIsWaitedForWithoutSpendingAttempts) {
  Beat("a", 0, 1, 1);
  auto id = CreateSnapshot({});
  ASSERT_OK(id);
  // The node restarts: connection refused (no answer, no reason), then
  // "starting" (an answer that says it takes no work yet): many more
  // times than max_attempts (3), while the registry still counts it alive.
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(transport_.WaitForCalls(1));
    auto call = transport_.Take();
    absl::Status down =
        i < 6 ? absl::UnavailableError("failed to connect: connection refused")
              : WithReason(absl::UnavailableError("node a is starting"),
                           ErrorReason::kNodeUnavailable);
    std::move(call.done)(down);
    auto t = Get(*id).partitions(0);
    EXPECT_EQ(t.state(), shutter::v1::PARTITION_TASK_STATE_WAITING);
    EXPECT_EQ(t.attempts(), 0u);
    EXPECT_EQ(t.unreachable(), static_cast<uint32_t>(i + 1));
    EXPECT_NE(t.last_error().find("unreachable"), std::string::npos)
        << t.last_error();
    Beat("a", 0, 1, 1);         // still counted alive
    Advance(absl::Seconds(2));  // the poll is at most 2 s
  }
  ASSERT_TRUE(transport_.WaitForCalls(1));
  Publish(transport_.Take());
  auto snap = Get(*id);
  EXPECT_EQ(snap.state(), shutter::v1::SNAPSHOT_STATE_COMMITTED)
      << snap.error();
  EXPECT_EQ(snap.partitions(0).attempts(), 1u);
  EXPECT_EQ(snap.partitions(0).unreachable(), 8u);
}

TEST_F(JobEngineTest, UnreachableNodeDeclaredDeadHandsOverToANewLeader) {
  Beat("a", 0, 1, 1, /*epoch=*/1);
  auto id = CreateSnapshot({});
  ASSERT_OK(id);
  ASSERT_TRUE(transport_.WaitForCalls(1));
  std::move(transport_.Take().done)(absl::UnavailableError("connection reset"));
  // b takes over at a higher epoch while a is still counted alive: the
  // next try goes to b (the leader is resolved at every dispatch).
  Beat("b", 0, 1, 1, /*epoch=*/2);
  Advance(absl::Seconds(2));
  ASSERT_TRUE(transport_.WaitForCalls(1));
  auto call = transport_.Take();
  EXPECT_EQ(call.address, "b:7100");
  EXPECT_EQ(call.request.expected_instance_id(), "b-inst");
  Publish(std::move(call));
  EXPECT_EQ(Get(*id).state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
}

TEST_F(JobEngineTest, PermanentErrorsFailAtOnceMismatchesAreRetried) {
  Beat("a", 0, 2, 2);
  auto id = CreateSnapshot({});
  ASSERT_OK(id);
  ASSERT_TRUE(transport_.WaitForCalls(2));
  // Partition 0: FAILED_PRECONDITION without a reason (e.g. a manifest in
  // another format) is not a stale epoch: no retry.
  auto c0 = transport_.Take();
  auto c1 = transport_.Take();
  if (c0.request.partition_id() != 0) std::swap(c0, c1);
  std::move(c0.done)(
      absl::FailedPreconditionError("manifest format version 7 unsupported"));
  // Partition 1: the node answers for another partition: retried.
  CreateCheckpointResponse wrong;
  wrong.mutable_manifest()->set_snapshot_id(*id);
  wrong.mutable_manifest()->set_partition_id(0);
  wrong.mutable_manifest()->set_leader_epoch(1);
  std::move(c1.done)(wrong);
  auto snap = Get(*id);
  EXPECT_EQ(snap.partitions(0).state(),
            shutter::v1::PARTITION_TASK_STATE_FAILED);
  EXPECT_EQ(snap.partitions(0).attempts(), 1u);
  EXPECT_EQ(snap.partitions(1).state(),
            shutter::v1::PARTITION_TASK_STATE_WAITING);
  EXPECT_NE(snap.partitions(1).last_error().find("answered for"),
            std::string::npos)
      << snap.partitions(1).last_error();
  Advance(absl::Seconds(5));
  ASSERT_TRUE(transport_.WaitForCalls(1));
  Publish(transport_.Take());
  snap = Get(*id);
  EXPECT_EQ(snap.partitions(1).state(),
            shutter::v1::PARTITION_TASK_STATE_PUBLISHED);
  EXPECT_EQ(snap.partitions(1).attempts(), 2u);
  EXPECT_EQ(snap.state(), shutter::v1::SNAPSHOT_STATE_FAILED);
}

TEST_F(JobEngineTest, AnswersAreCheckedAgainstTheStoredManifestsDigest) {
  Beat("a", 0, 4, 4);
  auto id = CreateSnapshot({});
  ASSERT_OK(id);
  ASSERT_TRUE(transport_.WaitForCalls(4));
  std::map<uint32_t, FakeTransport::Call> calls;
  for (int i = 0; i < 4; ++i) {
    auto c = transport_.Take();
    calls.emplace(c.request.partition_id(), std::move(c));
  }
  // 0: a current node's answer; 1: a node from before digests (read back).
  const CreateCheckpointResponse ok0 = PublishedAnswer(calls.at(0));
  std::move(calls.at(0).done)(ok0);
  Publish(std::move(calls.at(1)), 5, /*with_digest=*/false);
  // 2: published, but the size reported is not what the repository holds.
  const CreateCheckpointResponse right2 = PublishedAnswer(calls.at(2));
  CreateCheckpointResponse wrong_size = right2;
  wrong_size.set_manifest_bytes(wrong_size.manifest_bytes() + 1);
  std::move(calls.at(2).done)(wrong_size);
  // 3: the node says published with a digest, the repository has nothing;
  // then one with a malformed digest.
  CreateCheckpointResponse nothing = ok0;
  nothing.mutable_manifest()->set_partition_id(3);
  std::move(calls.at(3).done)(nothing);
  auto snap = Get(*id);
  EXPECT_EQ(snap.partitions(0).state(),
            shutter::v1::PARTITION_TASK_STATE_PUBLISHED);
  EXPECT_EQ(snap.partitions(0).manifest_sha256(), ok0.manifest_sha256());
  EXPECT_EQ(snap.partitions(1).state(),
            shutter::v1::PARTITION_TASK_STATE_PUBLISHED);
  EXPECT_EQ(snap.partitions(1).manifest_sha256(), "");
  for (uint32_t p : {2u, 3u}) {
    EXPECT_EQ(snap.partitions(p).state(),
              shutter::v1::PARTITION_TASK_STATE_WAITING)
        << p;
  }
  EXPECT_NE(snap.partitions(2).last_error().find("the node reported"),
            std::string::npos)
      << snap.partitions(2).last_error();
  EXPECT_NE(snap.partitions(3).last_error().find("is not published"),
            std::string::npos)
      << snap.partitions(3).last_error();
  Beat("a", 0, 4, 4);  // still alive, still the leader
  Advance(absl::Seconds(5));
  ASSERT_TRUE(transport_.WaitForCalls(2));
  CreateCheckpointResponse good3;
  for (int i = 0; i < 2; ++i) {
    auto c = transport_.Take();
    if (c.request.partition_id() == 3) {
      good3 = PublishedAnswer(c);
      CreateCheckpointResponse bad = good3;
      bad.set_manifest_sha256("not-hex");
      std::move(c.done)(bad);  // published now, but a malformed digest
    } else {
      std::move(c.done)(right2);  // already published: the right answer
    }
  }
  snap = Get(*id);
  EXPECT_EQ(snap.partitions(2).state(),
            shutter::v1::PARTITION_TASK_STATE_PUBLISHED);
  EXPECT_NE(snap.partitions(3).last_error().find("malformed manifest digest"),
            std::string::npos)
      << snap.partitions(3).last_error();
  Beat("a", 0, 4, 4);  // still alive, still the leader
  Advance(absl::Seconds(5));
  ASSERT_TRUE(transport_.WaitForCalls(1));
  std::move(transport_.Take().done)(good3);
  snap = Get(*id);
  ASSERT_EQ(snap.state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
  // The cluster manifest pins each partition manifest by the digest of its
  // stored bytes (the one from before digests: none).
  auto cm = repo_->ReadClusterManifest(*id);
  ASSERT_OK(cm);
  ASSERT_EQ(cm->partitions_size(), 4);
  for (const auto& e : cm->partitions()) {
    snapshot::ManifestDigest stored;
    ASSERT_OK(repo_->ReadPartitionManifest(*id, e.partition_id(), "", &stored));
    EXPECT_EQ(e.manifest_sha256(), e.partition_id() == 1 ? "" : stored.sha256)
        << e.partition_id();
    if (e.partition_id() != 1) {
      EXPECT_OK(repo_->ReadPartitionManifest(*id, e.partition_id(),
                                             e.manifest_sha256(), nullptr));
    }
  }
  EXPECT_THAT(
      repo_->ReadPartitionManifest(*id, 0, std::string(64, '0'), nullptr),
      StatusIs(absl::StatusCode::kDataLoss));
}

TEST(RetryPolicyTest, ClassifiesByReasonNotByCodeAlone) {
  auto cls = [](absl::Status s) { return ClassifyCheckpointFailure(s); };
  auto with = [](absl::Status s, ErrorReason r) { return WithReason(s, r); };
  EXPECT_EQ(cls(absl::UnavailableError("connect failed")),
            FailureClass::kUnreachable);
  EXPECT_EQ(cls(absl::CancelledError("server shutting down")),
            FailureClass::kUnreachable);
  // Another server on a restarted node's old port (seen in CI).
  EXPECT_EQ(cls(absl::UnimplementedError("")), FailureClass::kUnreachable);
  EXPECT_EQ(cls(absl::DeadlineExceededError("")), FailureClass::kDeadline);
  EXPECT_EQ(cls(absl::FailedPreconditionError("format")),
            FailureClass::kPermanent);
  EXPECT_EQ(cls(absl::InternalError("")), FailureClass::kPermanent);
  EXPECT_EQ(cls(absl::ResourceExhaustedError("message too large")),
            FailureClass::kPermanent);
  EXPECT_EQ(
      cls(with(absl::FailedPreconditionError(""), ErrorReason::kStaleEpoch)),
      FailureClass::kLeadership);
  EXPECT_EQ(
      cls(with(absl::FailedPreconditionError(""), ErrorReason::kNotLeader)),
      FailureClass::kLeadership);
  EXPECT_EQ(cls(with(absl::NotFoundError(""), ErrorReason::kNotHosted)),
            FailureClass::kLeadership);
  EXPECT_EQ(cls(with(absl::FailedPreconditionError(""),
                     ErrorReason::kWrongIncarnation)),
            FailureClass::kLeadership);
  EXPECT_EQ(cls(with(absl::ResourceExhaustedError(""), ErrorReason::kNodeBusy)),
            FailureClass::kBusy);
  EXPECT_EQ(
      cls(with(absl::UnavailableError(""), ErrorReason::kNodeUnavailable)),
      FailureClass::kUnreachable);
  EXPECT_EQ(cls(with(absl::CancelledError(""), ErrorReason::kCancelled)),
            FailureClass::kPermanent);
  EXPECT_EQ(
      cls(with(absl::InvalidArgumentError(""), ErrorReason::kInvalidRequest)),
      FailureClass::kPermanent);
  EXPECT_EQ(cls(with(absl::ResourceExhaustedError("ENOSPC"),
                     ErrorReason::kCheckpointFailed)),
            FailureClass::kTransient);
  EXPECT_EQ(cls(with(absl::InternalError("I/O error"),
                     ErrorReason::kCheckpointFailed)),
            FailureClass::kPermanent);
  EXPECT_EQ(cls(with(absl::DataLossError(""), ErrorReason::kMismatchedAnswer)),
            FailureClass::kTransient);
  EXPECT_FALSE(CountsAsAttempt(FailureClass::kUnreachable));
  EXPECT_TRUE(CountsAsAttempt(FailureClass::kDeadline));
  EXPECT_FALSE(IsRetryable(FailureClass::kPermanent));
}

TEST_F(JobEngineTest, WaitsForALeaderAndFailsAtTheDeadline) {
  Beat("a", 0, 1, 1);
  auto id = CreateSnapshot({});
  ASSERT_OK(id);
  ASSERT_TRUE(transport_.WaitForCalls(1));
  std::move(transport_.Take().done)(absl::UnavailableError("node down"));
  Advance(absl::Seconds(11));  // the node is now dead: no leader
  auto snap = Get(*id);
  EXPECT_EQ(snap.partitions(0).state(),
            shutter::v1::PARTITION_TASK_STATE_WAITING);
  EXPECT_NE(snap.partitions(0).last_error().find("no live leader"),
            std::string::npos)
      << snap.partitions(0).last_error();
  EXPECT_EQ(snap.state(), shutter::v1::SNAPSHOT_STATE_RUNNING);
  Advance(absl::Minutes(10));  // past the job's deadline
  snap = Get(*id);
  EXPECT_EQ(snap.state(), shutter::v1::SNAPSHOT_STATE_FAILED);
  EXPECT_NE(snap.partitions(0).last_error().find("before the deadline"),
            std::string::npos);
  EXPECT_EQ(transport_.Outstanding("a:7100"), 0u);
}

TEST_F(JobEngineTest, BadRequestsRecordNothing) {
  EXPECT_THAT(CreateSnapshot({}),
              StatusIs(absl::StatusCode::kFailedPrecondition, "no partitions"));
  Beat("a", 0, 2, 1);
  shutter::v1::CreateSnapshotRequest req;
  req.add_partition_ids(1);
  req.add_partition_ids(5);
  EXPECT_THAT(CreateSnapshot(req), StatusIs(absl::StatusCode::kInvalidArgument,
                                            "unknown partition 5"));
  req.clear_partition_ids();
  req.add_partition_ids(1);
  req.add_partition_ids(1);
  EXPECT_THAT(CreateSnapshot(req),
              StatusIs(absl::StatusCode::kInvalidArgument, "twice"));
  req.clear_partition_ids();
  req.set_label(std::string(300, 'x'));
  EXPECT_THAT(CreateSnapshot(req),
              StatusIs(absl::StatusCode::kInvalidArgument, "label"));
  req.set_label("nightly\n2026-11-27 INFO forged log line");
  EXPECT_THAT(CreateSnapshot(req), StatusIs(absl::StatusCode::kInvalidArgument,
                                            "control character"));
  req.set_label("bad\x1b[31m");
  EXPECT_THAT(CreateSnapshot(req), StatusIs(absl::StatusCode::kInvalidArgument,
                                            "control character"));
  req.set_label("caf\xc3");
  EXPECT_THAT(CreateSnapshot(req),
              StatusIs(absl::StatusCode::kInvalidArgument, "UTF-8"));
  // Malformed ids are INVALID_ARGUMENT, not NOT_FOUND.
  for (std::string bad :
       {std::string("../../etc"), std::string("a/b"), std::string(""),
        std::string("a\0b", 3), std::string(10000, 'x')}) {
    auto g = coordinator_->GetSnapshot(bad);
    EXPECT_THAT(g, StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
    EXPECT_LT(g.status().message().size(), 300u);
    EXPECT_THAT(coordinator_->CancelSnapshot(bad),
                StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(VerifySnapshot(bad),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
  EXPECT_THAT(coordinator_->GetSnapshot("20260101T000000.000Z-00000000"),
              StatusIs(absl::StatusCode::kNotFound));
  req.set_label("");
  Beat("b", 2, 3, 1);
  Beat("c", 5, 1, 1);
  clock_.Advance(absl::Seconds(6));
  Beat("b", 2, 3, 1);
  clock_.Advance(absl::Seconds(6));  // a and c are now dead, b is alive
  // Every leaderless partition is listed, not only the first.
  EXPECT_THAT(CreateSnapshot({}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "3 of 6 partitions have no usable leader: 0-1,5"));
  EXPECT_TRUE(coordinator_->ListSnapshots(0).empty());
  auto all = store_->LoadAll();
  ASSERT_OK(all);
  EXPECT_TRUE(all->empty());
}

TEST_F(JobEngineTest, RestartResumesInterruptedJobs) {
  Beat("a", 0, 2, 2);
  auto done_id = CreateSnapshot({});
  ASSERT_OK(done_id);
  ASSERT_TRUE(transport_.WaitForCalls(2));
  Publish(transport_.Take());
  Publish(transport_.Take());
  ASSERT_EQ(Get(*done_id).state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
  auto running_id = CreateSnapshot({});
  ASSERT_OK(running_id);
  ASSERT_TRUE(transport_.WaitForCalls(2));
  auto first = transport_.Take();
  const uint32_t published_partition = first.request.partition_id();
  Publish(std::move(first));
  StopCoordinator();  // the other call is cut off, not recorded as failed
  StartCoordinator();
  EXPECT_EQ(Get(*done_id).state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
  // Only the unfinished partition is asked for again.
  ASSERT_TRUE(transport_.WaitForCalls(1));
  auto again = transport_.Take();
  EXPECT_NE(again.request.partition_id(), published_partition);
  EXPECT_EQ(again.request.snapshot_id(), *running_id);
  Publish(std::move(again));
  auto snap = Get(*running_id);
  EXPECT_EQ(snap.state(), shutter::v1::SNAPSHOT_STATE_COMMITTED)
      << snap.error();
  EXPECT_EQ(snap.partitions(published_partition).attempts(), 1u);
  EXPECT_OK(repo_->ReadClusterManifest(*running_id));
  auto list = coordinator_->ListSnapshots(0);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].snapshot_id(), *running_id);  // newest first
  // New ids still sort after the recovered ones.
  auto third = CreateSnapshot({});
  ASSERT_OK(third);
  EXPECT_LT(*running_id, *third);
}

// The job history bound: finished jobs beyond the newest
// task_history_jobs keep their header and what their tasks summed to; their
// task records leave the store (and memory); running jobs are never pruned;
// a pruned snapshot can still be restored (from its manifest).
TEST_F(JobEngineTest, FinishedJobsBeyondTheHistoryKeepASummaryOnly) {
  StopCoordinator();
  task_history_jobs_ = 2;
  StartCoordinator();
  Beat("a", 0, 3, 3);
  std::vector<std::string> ids;
  std::vector<shutter::v1::SnapshotSummary> before;
  for (int i = 0; i < 4; ++i) {
    auto id = CreateSnapshot({});
    ASSERT_OK(id);
    ASSERT_TRUE(transport_.WaitForCalls(3));
    for (int p = 0; p < 3; ++p) Publish(transport_.Take());
    ASSERT_EQ(Get(*id).state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
    ids.push_back(*id);
    before.push_back(coordinator_->ListSnapshots(1)[0]);
  }
  // A running job is not a finished one: it neither counts nor is pruned.
  auto running = CreateSnapshot({});
  ASSERT_OK(running);
  ASSERT_TRUE(transport_.WaitForCalls(3));
  coordinator_->WaitForQuiescenceForTesting();
  auto check = [&] {
    auto list = coordinator_->ListSnapshots(0);
    ASSERT_EQ(list.size(), 5u);
    EXPECT_EQ(Get(*running).partitions_size(), 3);
    for (int i = 0; i < 4; ++i) {
      const shutter::v1::Snapshot s = Get(ids[i]);
      const bool pruned = i < 2;
      SCOPED_TRACE(ids[i]);
      EXPECT_EQ(s.has_pruned_tasks(), pruned);
      EXPECT_EQ(s.partitions_size(), pruned ? 0 : 3);
      EXPECT_EQ(s.state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
      // The summary is what it was before the prune.
      const auto& now = list[4 - i];
      EXPECT_EQ(now.snapshot_id(), ids[i]);
      EXPECT_EQ(now.partitions_total(), 3u);
      EXPECT_EQ(now.partitions_published(), 3u);
      EXPECT_EQ(now.total_bytes(), before[i].total_bytes());
      EXPECT_GT(now.total_bytes(), 0u);
    }
  };
  check();
  // The store holds no task records of the pruned jobs.
  auto all = store_->LoadAll();
  ASSERT_OK(all);
  for (const auto& s : *all) {
    if (s.snapshot_id() == ids[0] || s.snapshot_id() == ids[1]) {
      EXPECT_EQ(s.partitions_size(), 0) << s.snapshot_id();
      EXPECT_EQ(s.pruned_tasks().published(), 3u);
    }
  }
  // Restarted: the same, and the running job resumes.
  StopCoordinator();
  StartCoordinator();
  check();
  ASSERT_TRUE(transport_.WaitForCalls(3));
  for (int p = 0; p < 3; ++p) Publish(transport_.Take());
  ASSERT_EQ(Get(*running).state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
  EXPECT_TRUE(Get(ids[2]).has_pruned_tasks());  // now third newest
  // A pruned snapshot's restore plan comes from its manifest.
  shutter::v1::RestoreSnapshotRequest r;
  r.set_snapshot_id(ids[0]);
  r.set_dry_run(true);
  auto plan = RestoreSnapshot(r);
  ASSERT_OK(plan);
  ASSERT_EQ(plan->plan().nodes_size(), 1);
  EXPECT_EQ(plan->plan().nodes(0).partition_ids_size(), 3);
}

TEST_F(JobEngineTest, RestartAfterTheLastPartitionCommits) {
  // Simulate a crash right after the store recorded the last publication
  // but before the job finished: rewrite the record as RUNNING.
  shutter::v1::Snapshot snap = CommitOneAndStop();
  ASSERT_FALSE(snap.snapshot_id().empty());
  const std::string id = snap.snapshot_id();
  snap.set_state(shutter::v1::SNAPSHOT_STATE_RUNNING);
  snap.clear_manifest_path();
  ASSERT_OK(store_->PutJob(snap));
  StartCoordinator();  // the manifest is already there: it is ours
  EXPECT_EQ(Get(id).state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
  EXPECT_EQ(transport_.Outstanding("a:7100"), 0u);
}

// Decided once: a job whose commit is recorded as decided (a leader that
// wrote the decision and died before the cluster manifest) is only ever
// finished: a restart commits it, a cancel is refused, and a failing
// manifest write is tried again rather than rolled back.
TEST_F(JobEngineTest, ADecidedCommitIsOnlyEverFinished) {
  shutter::v1::Snapshot snap = CommitOneAndStop();
  ASSERT_FALSE(snap.snapshot_id().empty());
  const std::string id = snap.snapshot_id();
  EXPECT_TRUE(snap.commit_decided());
  // The crash: decided and durable, no cluster manifest yet; something in
  // the way of writing it (a directory where the manifest goes).
  snap.set_state(shutter::v1::SNAPSHOT_STATE_RUNNING);
  snap.clear_manifest_path();
  snap.clear_finished_at_micros();
  ASSERT_OK(store_->PutJob(snap));
  const std::string manifest =
      Abs(snapshot::Repository::ClusterManifestPath(id));
  ASSERT_TRUE(std::filesystem::remove(manifest));
  std::filesystem::create_directories(manifest + "/in-the-way");
  StartCoordinator();
  auto running = Get(id);
  EXPECT_EQ(running.state(), shutter::v1::SNAPSHOT_STATE_RUNNING);
  EXPECT_THAT(running.error(), ::testing::HasSubstr("the commit is decided"));
  // Never rolled back, never cancelled: only finished.
  EXPECT_THAT(
      coordinator_->CancelSnapshot(id),
      StatusIs(absl::StatusCode::kFailedPrecondition, "commit is decided"));
  Advance(absl::Seconds(1));  // still in the way: tried again, backs off
  EXPECT_THAT(Get(id).error(), ::testing::HasSubstr("trying again in 2s"));
  std::filesystem::remove_all(manifest);
  Advance(absl::Seconds(2));
  auto done = Get(id);
  EXPECT_EQ(done.state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
  EXPECT_TRUE(done.error().empty()) << done.error();
  EXPECT_OK(repo_->ReadClusterManifest(id));
  EXPECT_EQ(transport_.Outstanding("a:7100"), 0u);
}

TEST_F(JobEngineTest, DeleteRemovesTheSnapshotAndKeepsTheNewest) {
  Beat("a", 0, 1, 1);
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(CommitOne());
  ASSERT_FALSE(HasFailure());
  // The newest committed one is protected; so is a pinned one.
  EXPECT_THAT(DeleteSnapshotJob(*coordinator_, ids[2], false),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "newest committed snapshot"));
  ASSERT_OK(coordinator_->PinSnapshot(ids[1], true));
  EXPECT_THAT(DeleteSnapshotJob(*coordinator_, ids[1], false),
              StatusIs(absl::StatusCode::kFailedPrecondition, "pinned"));
  EXPECT_TRUE(coordinator_->ListSnapshots(0)[1].pinned());
  auto deleted = DeleteSnapshotJob(*coordinator_, ids[0], false);
  ASSERT_OK(deleted);
  EXPECT_EQ(deleted->state(), shutter::v1::SNAPSHOT_STATE_DELETED);
  EXPECT_GT(deleted->deleted_at_micros(), 0);
  EXPECT_THAT(repo_->ReadClusterManifest(ids[0]),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(repo_->ReadPartitionManifest(ids[0], 0),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_OK(repo_->ReadClusterManifest(ids[1]));
  // Idempotent; and a deleted snapshot cannot be verified or pinned.
  ASSERT_OK(DeleteSnapshotJob(*coordinator_, ids[0], false));
  EXPECT_THAT(VerifySnapshot(ids[0]),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(coordinator_->PinSnapshot(ids[0], true),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  // Force deletes the newest; the state survives a restart.
  ASSERT_OK(DeleteSnapshotJob(*coordinator_, ids[2], true));
  StopCoordinator();
  StartCoordinator();
  EXPECT_EQ(Get(ids[0]).state(), shutter::v1::SNAPSHOT_STATE_DELETED);
  EXPECT_EQ(Get(ids[2]).state(), shutter::v1::SNAPSHOT_STATE_DELETED);
  EXPECT_TRUE(Get(ids[1]).pinned());
  EXPECT_TRUE(coordinator_->InterruptedDeletes().empty());
}

TEST_F(JobEngineTest, RunningSnapshotsAreNotDeleted) {
  Beat("a", 0, 1, 1);
  auto id = CreateSnapshot({});
  ASSERT_OK(id);
  ASSERT_TRUE(transport_.WaitForCalls(1));
  EXPECT_THAT(DeleteSnapshotJob(*coordinator_, *id, true),
              StatusIs(absl::StatusCode::kFailedPrecondition, "cancel it"));
  EXPECT_THAT(DeleteSnapshotJob(*coordinator_, "nope", true),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(DeleteSnapshotJob(*coordinator_, "../x", true),
              StatusIs(absl::StatusCode::kInvalidArgument));
  Publish(transport_.Take());
}

// A deletion cut short by a crash (recorded as asked, the repository not
// yet cleaned) is reported at the next start, and finishing it works.
TEST_F(JobEngineTest, InterruptedDeleteIsFinishedAfterARestart) {
  Beat("a", 0, 1, 1);
  const std::string id = CommitOne();
  ASSERT_FALSE(HasFailure());
  auto snap = Get(id);
  StopCoordinator();
  snap.set_delete_requested(true);
  ASSERT_OK(store_->PutJob(snap));
  StartCoordinator();
  EXPECT_EQ(coordinator_->InterruptedDeletes(), std::vector<std::string>{id});
  ASSERT_OK(DeleteSnapshotJob(*coordinator_, id, true));
  EXPECT_THAT(repo_->ReadClusterManifest(id),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_TRUE(coordinator_->InterruptedDeletes().empty());
}

// Garbage collection is a job of its own kind: one task on the
// controller, recorded, listed, its report in the job; a collection that
// cannot run (another holds the repository's lock) fails at once with the
// repository's reason and spends one attempt.
TEST_F(JobEngineTest, GcIsAJobOfItsOwnKind) {
  snapshot::BlobStore::PutOptions plain;
  ASSERT_OK(
      repo_->blob_store()->Put("blobs/sha256/ab/abandoned", "xyz", plain));
  Maintenance::Options mo;
  Maintenance m(mo, coordinator_.get(), repo_.get(), store_.get(), &clock_);
  shutter::v1::CollectGarbageRequest req;
  req.set_grace_seconds(0);
  auto r = m.CollectGarbage(req);
  ASSERT_OK(r);
  EXPECT_EQ(r->objects_deleted(), 1u);
  EXPECT_EQ(r->bytes_deleted(), 3u);
  EXPECT_EQ(r->grace_seconds(), 0);
  auto jobs = coordinator_->ListSnapshots(0, shutter::v1::JOB_TYPE_GC);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].snapshot_id(), r->gc_id());
  EXPECT_EQ(jobs[0].state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
  // Not a snapshot: never listed, restored or kept as one.
  EXPECT_TRUE(coordinator_->ListSnapshots(0).empty());
  EXPECT_THAT(coordinator_->CheckCommittedSnapshot(r->gc_id()),
              StatusIs(absl::StatusCode::kFailedPrecondition, "gc job"));
  shutter::v1::Snapshot job = Get(r->gc_id());
  EXPECT_EQ(job.gc().objects_deleted(), 1u);
  ASSERT_EQ(job.partitions_size(), 1);
  EXPECT_EQ(job.partitions(0).node_id(), "@controller:gc");
  // Its record is the store's own, with the report, and survives a
  // restart.
  coordinator_->WaitForQuiescenceForTesting();
  StopCoordinator();
  StartCoordinator();
  EXPECT_EQ(Get(r->gc_id()).gc().bytes_deleted(), 3u);
  EXPECT_EQ(Get(r->gc_id()).state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);

  // Another collector's lock: FAILED_PRECONDITION naming it, one attempt.
  ASSERT_OK(repo_->blob_store()->Put("locks/gc", "someone-else\n", plain));
  Maintenance m2(mo, coordinator_.get(), repo_.get(), store_.get(), &clock_);
  auto refused = m2.CollectGarbage(req);
  EXPECT_THAT(refused,
              StatusIs(absl::StatusCode::kFailedPrecondition, "someone-else"));
  jobs = coordinator_->ListSnapshots(0, shutter::v1::JOB_TYPE_GC);
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0].state(), shutter::v1::SNAPSHOT_STATE_FAILED);
  EXPECT_EQ(Get(jobs[0].snapshot_id()).partitions(0).attempts(), 1u);
}

// Deleting is a job of its own kind, on the controller: listed with its
// snapshot as source; a delete job a crash interrupted (recorded RUNNING,
// the snapshot asked for deletion) is resumed by the engine and marks the
// snapshot DELETED.
TEST_F(JobEngineTest, DeleteIsAJobOfItsOwnKindAndResumesAfterACrash) {
  Beat("a", 0, 1, 1);
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(CommitOne());
  ASSERT_FALSE(HasFailure());
  ASSERT_OK(DeleteSnapshotJob(*coordinator_, ids[0], false));
  auto deletes = coordinator_->ListSnapshots(0, shutter::v1::JOB_TYPE_DELETE);
  ASSERT_EQ(deletes.size(), 1u);
  EXPECT_EQ(deletes[0].source_snapshot_id(), ids[0]);
  EXPECT_EQ(deletes[0].state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
  EXPECT_EQ(coordinator_->ListSnapshots(0).size(), 3u);  // not a snapshot

  // A crash after the deletion was asked for and its job recorded, before
  // the job ran.
  coordinator_->WaitForQuiescenceForTesting();
  StopCoordinator();
  shutter::v1::Snapshot snap;
  {
    auto all = store_->LoadAll();
    ASSERT_OK(all);
    for (auto& j : *all) {
      if (j.snapshot_id() == ids[1]) snap = j;
    }
  }
  snap.set_delete_requested(true);
  ASSERT_OK(store_->PutJob(snap));
  shutter::v1::Snapshot job;
  job.set_snapshot_id("20260101T000000.000Z-0000dddd");
  job.set_type(shutter::v1::JOB_TYPE_DELETE);
  job.set_state(shutter::v1::SNAPSHOT_STATE_RUNNING);
  job.set_source_snapshot_id(ids[1]);
  job.set_created_at_micros(absl::ToUnixMicros(clock_.Now()));
  job.set_deadline_micros(absl::ToUnixMicros(clock_.Now() + absl::Hours(1)));
  auto* t = job.add_partitions();
  t->set_partition_id(0);
  t->set_state(shutter::v1::PARTITION_TASK_STATE_QUEUED);
  ASSERT_OK(store_->PutJob(job));
  StartCoordinator();
  auto done = coordinator_->AwaitJob(job.snapshot_id(), absl::Minutes(1));
  ASSERT_OK(done);
  EXPECT_EQ(done->state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
  EXPECT_EQ(Get(ids[1]).state(), shutter::v1::SNAPSHOT_STATE_DELETED);
  EXPECT_THAT(repo_->ReadClusterManifest(ids[1]),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_TRUE(coordinator_->InterruptedDeletes().empty());
  EXPECT_OK(repo_->ReadClusterManifest(ids[2]));
}

// A garbage collection job the controller was running when it crashed:
// recorded RUNNING, its lock (owned by its id) still in the repository.
// The engine resumes it at the next start like any job; it takes its own
// lock over, finishes and commits with its report.
TEST_F(JobEngineTest, GcJobInterruptedByACrashIsResumedByTheEngine) {
  StopCoordinator();
  const std::string id = "20260101T000000.000Z-0000abcd";
  snapshot::BlobStore::PutOptions plain;
  ASSERT_OK(repo_->blob_store()->Put("blobs/sha256/ab/abandoned", "x", plain));
  ASSERT_OK(repo_->blob_store()->Put("locks/gc", id + "\n", plain));
  shutter::v1::Snapshot job;
  job.set_snapshot_id(id);
  job.set_type(shutter::v1::JOB_TYPE_GC);
  job.set_state(shutter::v1::SNAPSHOT_STATE_RUNNING);
  job.set_created_at_micros(absl::ToUnixMicros(clock_.Now()));
  job.set_deadline_micros(absl::ToUnixMicros(clock_.Now() + absl::Hours(1)));
  job.mutable_gc()->set_grace_seconds(0);
  auto* t = job.add_partitions();
  t->set_partition_id(0);
  t->set_state(shutter::v1::PARTITION_TASK_STATE_QUEUED);
  t->set_node_id("@controller:gc");
  ASSERT_OK(store_->PutJob(job));
  StartCoordinator();
  auto done = coordinator_->AwaitJob(id, absl::Minutes(1));
  ASSERT_OK(done);
  EXPECT_EQ(done->state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
  EXPECT_EQ(done->gc().objects_deleted(), 1u);
  EXPECT_THAT(repo_->blob_store()->Head("blobs/sha256/ab/abandoned"),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(repo_->blob_store()->Head("locks/gc"),
              StatusIs(absl::StatusCode::kNotFound));
}

// A garbage collection an earlier controller (before GC was a job kind)
// was running when it crashed: its gc/<id> record says RUNNING and its
// lock is still in the repository (holding off every other collector).
// The next start finishes it under the same id, which takes the lock
// over, and records DONE.
TEST_F(JobEngineTest, LegacyGcRecordInterruptedByACrashIsFinished) {
  snapshot::BlobStore::PutOptions plain;
  ASSERT_OK(repo_->blob_store()->Put("blobs/sha256/ab/abandoned", "x", plain));
  ASSERT_OK(repo_->blob_store()->Put("locks/gc", "gc-crashed\n", plain));
  shutter::v1::GcJobRecord record;
  record.set_gc_id("gc-crashed");
  record.set_state("RUNNING");
  record.set_grace_seconds(0);
  JobStoreBatch batch;
  batch.puts.emplace_back("gc/gc-crashed", record.SerializeAsString());
  ASSERT_OK(store_->Write(batch));
  Maintenance::Options mo;
  mo.gc_grace = absl::ZeroDuration();
  Maintenance m(mo, coordinator_.get(), repo_.get(), store_.get(), &clock_);
  shutter::v1::CollectGarbageRequest req;
  req.set_grace_seconds(0);
  // Before the resume, another collection is refused by the lock.
  EXPECT_THAT(m.CollectGarbage(req),
              StatusIs(absl::StatusCode::kFailedPrecondition, "gc-crashed"));
  m.Start();
  m.WaitIdleForTesting();
  EXPECT_THAT(repo_->blob_store()->Head("blobs/sha256/ab/abandoned"),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(repo_->blob_store()->Head("locks/gc"),
              StatusIs(absl::StatusCode::kNotFound));
  std::string state;
  ASSERT_OK(store_->Scan("gc/", [&](absl::string_view, absl::string_view v) {
    shutter::v1::GcJobRecord r;
    EXPECT_TRUE(r.ParseFromArray(v.data(), static_cast<int>(v.size())));
    if (r.gc_id() == "gc-crashed") state = r.state();
    return absl::OkStatus();
  }));
  EXPECT_EQ(state, "DONE");
  ASSERT_OK(m.CollectGarbage(req));  // and the lock is free again
  m.Shutdown();
}

// Schedules on the fake clock: runs when due, never overlaps itself (a
// tick during a running snapshot is skipped and reported), records the
// last success, and survives a restart with its counters.
TEST_F(JobEngineTest, VerifySchedulesCheckTheNewestCommittedSnapshot) {
  Beat("a", 0, 2, 2);
  ScheduleRunner runner({absl::Seconds(1)}, coordinator_.get(), nullptr,
                        store_.get(), timer_.get(), &clock_);
  on_commit_ = [&](const std::string& id) { runner.OnCommit(id); };
  shutter::v1::Schedule s;
  s.set_name("nightly-check");
  s.set_every("1h");
  s.set_job(shutter::v1::JOB_TYPE_VERIFY);
  s.set_label("x");  // a verify takes no label: refused
  EXPECT_THAT(runner.Create(s), StatusIs(absl::StatusCode::kInvalidArgument));
  s.clear_label();
  s.set_job(shutter::v1::JOB_TYPE_RESTORE);
  EXPECT_THAT(runner.Create(s), StatusIs(absl::StatusCode::kInvalidArgument));
  s.set_job(shutter::v1::JOB_TYPE_VERIFY);
  ASSERT_OK(runner.Create(s));
  // Nothing committed yet: the tick is skipped, saying why.
  clock_.Advance(absl::Hours(1));
  Beat("a", 0, 2, 2);
  runner.Tick();
  EXPECT_EQ(runner.List()[0].runs(), 0u);
  EXPECT_NE(runner.List()[0].last_skip_reason().find("no committed snapshot"),
            std::string::npos)
      << runner.List()[0].last_skip_reason();
  // Two snapshots: the newest is verified, and the success recorded.
  std::string newest;
  for (int i = 0; i < 2; ++i) {
    auto id = CreateSnapshot({});
    ASSERT_OK(id);
    ASSERT_TRUE(transport_.WaitForCalls(2));
    Publish(transport_.Take());
    Publish(transport_.Take());
    ASSERT_EQ(Get(*id).state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
    newest = *id;
  }
  clock_.Advance(absl::Hours(1));
  Beat("a", 0, 2, 2);
  runner.Tick();
  auto run = runner.List()[0];
  ASSERT_EQ(run.runs(), 1u);
  const std::string verify_id = run.last_snapshot_id();
  shutter::v1::Snapshot job = WaitEnded(verify_id);
  EXPECT_EQ(job.type(), shutter::v1::JOB_TYPE_VERIFY);
  EXPECT_EQ(job.source_snapshot_id(), newest);
  EXPECT_EQ(job.state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
  EXPECT_EQ(runner.List()[0].last_success_snapshot_id(), verify_id);
  on_commit_ = nullptr;
}

TEST_F(JobEngineTest, SchedulesRunWhenDueAndNeverOverlap) {
  Beat("a", 0, 2, 2);
  ScheduleRunner runner({absl::Seconds(1)}, coordinator_.get(), nullptr,
                        store_.get(), timer_.get(), &clock_);
  on_commit_ = [&](const std::string& id) { runner.OnCommit(id); };
  shutter::v1::Schedule s;
  s.set_name("hourly");
  s.set_every("1h");
  s.set_label("hourly");
  s.add_partition_ids(1);
  auto created = runner.Create(s);
  ASSERT_OK(created);
  EXPECT_EQ(absl::FromUnixMicros(created->next_run_at_micros()),
            clock_.Now() + absl::Hours(1));
  EXPECT_THAT(runner.Create(s), StatusIs(absl::StatusCode::kAlreadyExists));
  runner.Tick();
  EXPECT_EQ(transport_.Outstanding("a:7100"), 0u);  // not due yet

  clock_.Advance(absl::Hours(1));
  Beat("a", 0, 2, 2);  // alive (the fake clock jumped past dead_after)
  runner.Tick();
  ASSERT_TRUE(transport_.WaitForCalls(1));
  auto first = runner.List()[0];
  EXPECT_EQ(first.runs(), 1u);
  const std::string id = first.last_snapshot_id();
  EXPECT_EQ(Get(id).label(), "hourly");
  EXPECT_EQ(Get(id).schedule(), "hourly");
  EXPECT_EQ(Get(id).partitions_size(), 1);

  // Due again while the first run is still going: skipped, reported.
  clock_.Advance(absl::Hours(1));
  Beat("a", 0, 2, 2);
  runner.Tick();
  auto second = runner.List()[0];
  EXPECT_EQ(second.runs(), 1u);
  EXPECT_EQ(second.skipped(), 1u);
  EXPECT_NE(second.last_skip_reason().find("still RUNNING"), std::string::npos)
      << second.last_skip_reason();
  EXPECT_EQ(second.last_success_at_micros(), 0);

  Publish(transport_.Take());
  ASSERT_EQ(Get(id).state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
  auto third = runner.List()[0];
  EXPECT_EQ(third.last_success_snapshot_id(), id);
  EXPECT_EQ(absl::FromUnixMicros(third.last_success_at_micros()), clock_.Now());

  // Paused: due ticks do nothing; resumed: from now, not a burst.
  ASSERT_OK(runner.SetPaused("hourly", true));
  clock_.Advance(absl::Hours(5));
  runner.Tick();
  EXPECT_EQ(runner.List()[0].runs(), 1u);
  auto resumed = runner.SetPaused("hourly", false);
  ASSERT_OK(resumed);
  EXPECT_EQ(absl::FromUnixMicros(resumed->next_run_at_micros()),
            clock_.Now() + absl::Hours(1));

  // A restart keeps everything.
  on_commit_ = nullptr;
  ScheduleRunner again({absl::Seconds(1)}, coordinator_.get(), nullptr,
                       store_.get(), timer_.get(), &clock_);
  ASSERT_OK(again.Start());
  again.Shutdown();
  ASSERT_EQ(again.List().size(), 1u);
  EXPECT_EQ(again.List()[0].SerializeAsString(),
            runner.List()[0].SerializeAsString());
  ASSERT_OK(again.Delete("hourly"));
  EXPECT_TRUE(again.List().empty());
  EXPECT_THAT(again.Delete("hourly"), StatusIs(absl::StatusCode::kNotFound));
}

// A leader that started a schedule's run and died before recording the
// tick: its successor (a new engine on the same store, the schedule's
// record as it was before the tick) runs the same tick, which finds the
// job already started instead of starting a second one.
TEST_F(JobEngineTest, AScheduleTickRepeatedAfterACrashStartsOneJob) {
  Beat("a", 0, 2, 2);
  shutter::v1::Schedule before;
  std::string id;
  {
    ScheduleRunner runner({absl::Seconds(1)}, coordinator_.get(), nullptr,
                          store_.get(), timer_.get(), &clock_);
    shutter::v1::Schedule s;
    s.set_name("often");
    s.set_every("1m");
    s.add_partition_ids(0);
    ASSERT_OK(runner.Create(s));
    before = runner.List()[0];
    clock_.Advance(absl::Minutes(1));
    Beat("a", 0, 2, 2);
    runner.Tick();
    ASSERT_TRUE(transport_.WaitForCalls(1));
    id = runner.List()[0].last_snapshot_id();
    ASSERT_FALSE(id.empty());
  }
  StopCoordinator();
  // The tick's own record never made it.
  ASSERT_OK(store_->PutRecord(absl::StrCat("schedule/", before.name()),
                              before.SerializeAsString()));
  StartCoordinator();
  Beat("a", 0, 2, 2);
  ScheduleRunner again({absl::Seconds(1)}, coordinator_.get(), nullptr,
                       store_.get(), timer_.get(), &clock_);
  ASSERT_OK(again.Start());
  again.Tick();
  again.Shutdown();
  EXPECT_EQ(again.List()[0].last_snapshot_id(), id);
  EXPECT_EQ(again.List()[0].runs(), 1u);
  EXPECT_EQ(coordinator_->ListSnapshots(0).size(), 1u);
}

TEST_F(JobEngineTest, BadSchedulesAreRefused) {
  ScheduleRunner runner({}, coordinator_.get(), nullptr, store_.get(),
                        timer_.get(), &clock_);
  shutter::v1::Schedule s;
  s.set_name("x");
  EXPECT_THAT(runner.Create(s),
              StatusIs(absl::StatusCode::kInvalidArgument, "exactly one"));
  s.set_every("10s");
  EXPECT_THAT(runner.Create(s),
              StatusIs(absl::StatusCode::kInvalidArgument, "minimum, 1m"));
  s.set_every("");
  s.set_cron("0 0 30 2 *");
  EXPECT_THAT(runner.Create(s),
              StatusIs(absl::StatusCode::kInvalidArgument, "never matches"));
  s.set_cron("0 * * * *");
  s.set_name("../etc");
  EXPECT_THAT(runner.Create(s), StatusIs(absl::StatusCode::kInvalidArgument));
  s.set_name("ok");
  s.mutable_retention()->set_keep_within_seconds(-5);
  EXPECT_THAT(runner.Create(s), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(runner.List().empty());
}

// A repository in memory (the coordinator reads manifests and writes the
// cluster manifest; nodes publish).
class MemRepository : public snapshot::Repository {
 public:
  absl::StatusOr<shutter::v1::PartitionManifest> PublishPartition(
      const shutter::v1::PartitionManifest& header, const std::string&,
      const std::function<absl::Status()>&, snapshot::PublishStats*) override {
    absl::MutexLock l(&mu_);
    parts_[{header.snapshot_id(), header.partition_id()}] = header;
    return header;
  }
  using snapshot::Repository::ReadPartitionManifest;
  absl::StatusOr<shutter::v1::PartitionManifest> ReadPartitionManifest(
      const std::string& snapshot_id, uint32_t partition_id,
      const std::string& /*expected_sha256*/,
      snapshot::ManifestDigest* /*digest*/) const override {
    absl::MutexLock l(&mu_);
    auto it = parts_.find({snapshot_id, partition_id});
    if (it == parts_.end()) return absl::NotFoundError("not published");
    return it->second;
  }
  absl::StatusOr<uint64_t> PartitionManifestSize(
      const std::string& snapshot_id, uint32_t partition_id) const override {
    absl::MutexLock l(&mu_);
    if (parts_.count({snapshot_id, partition_id}) == 0) {
      return absl::NotFoundError("not published");
    }
    return 0;
  }
  absl::Status VerifyPartition(
      const shutter::v1::PartitionManifest&) const override {
    return absl::OkStatus();
  }
  absl::Status CommitClusterManifest(
      const shutter::v1::ClusterManifest& m) override {
    absl::MutexLock l(&mu_);
    if (!cluster_.emplace(m.snapshot_id(), m).second) {
      return absl::AlreadyExistsError("exists");
    }
    return absl::OkStatus();
  }
  absl::StatusOr<shutter::v1::ClusterManifest> ReadClusterManifest(
      const std::string& snapshot_id) const override {
    absl::MutexLock l(&mu_);
    auto it = cluster_.find(snapshot_id);
    if (it == cluster_.end()) return absl::NotFoundError("no manifest");
    return it->second;
  }
  absl::Status DeleteUncommittedSnapshot(const std::string&) override {
    return absl::OkStatus();
  }
  std::string Describe() const override { return "memory"; }
  absl::StatusOr<std::string> ReadIdentity() const override {
    return std::string(32, 'a');
  }
  // Not used by the coordinator's tests.
  absl::Status DownloadPartition(
      const shutter::v1::PartitionManifest&, const std::string&,
      const snapshot::DownloadOptions&) const override {
    return absl::UnimplementedError("memory repository");
  }
  absl::Status DeleteSnapshot(const std::string&) override {
    return absl::UnimplementedError("memory repository");
  }
  absl::StatusOr<std::vector<snapshot::SnapshotListing>> ListSnapshots()
      const override {
    return absl::UnimplementedError("memory repository");
  }
  absl::StatusOr<snapshot::RepositoryStats> GetStats() const override {
    return absl::UnimplementedError("memory repository");
  }
  absl::StatusOr<snapshot::GcReport> CollectGarbage(
      const snapshot::GcOptions&) override {
    return absl::UnimplementedError("memory repository");
  }
  absl::StatusOr<int> ReleasePublishLocks(
      const std::function<bool(const snapshot::PublishLock&)>&) override {
    return 0;
  }
  snapshot::BlobStore* blob_store() const override { return nullptr; }

 private:
  mutable absl::Mutex mu_;
  std::map<std::pair<std::string, uint32_t>, shutter::v1::PartitionManifest>
      parts_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, shutter::v1::ClusterManifest> cluster_
      ABSL_GUARDED_BY(mu_);
};

// Nodes that publish and answer at once, counting calls in flight.
class InstantTransport : public NodeTransport {
 public:
  explicit InstantTransport(MemRepository* repo) : repo_(repo) {}
  void CreateCheckpoint(const std::string& address,
                        const CreateCheckpointRequest& request, absl::Duration,
                        Callback done) override {
    shutter::v1::PartitionManifest m;
    m.set_snapshot_id(request.snapshot_id());
    m.set_partition_id(request.partition_id());
    m.set_node_id(address.substr(0, address.find(':')));
    m.set_leader_epoch(request.expected_leader_epoch());
    m.set_applied_index(request.partition_id());
    auto published = repo_->PublishPartition(m, "", nullptr, nullptr);
    CreateCheckpointResponse resp;
    *resp.mutable_manifest() = *published;
    resp.set_manifest_path("p");
    ++calls_;
    std::move(done)(resp);
  }
  void CancelCheckpoints(const std::string&, const std::string&) override {}
  void Shutdown() override {}
  int calls() const { return calls_.load(); }

 private:
  MemRepository* const repo_;
  std::atomic<int> calls_{0};
};

// A 10,000-partition job (1,000 nodes x 10) commits with the right
// content, and the job store holds it as per-task records.
TEST(LargeJobTest, TenThousandPartitionsCommit) {
  testing::TempDir tmp;
  FakeClock clock;
  ManualTimer timer(&clock);
  NodeRegistry registry({absl::Seconds(10), "", ""}, &clock);
  MemRepository repo;
  InstantTransport transport(&repo);
  auto store = RocksDbJobStore::Open(tmp.Sub("jobs"));
  ASSERT_OK(store);
  JobEngine::Options o;
  auto c = JobEngine::Create(o,
                             StandardKinds({&transport, &repo, &registry,
                                            o.rpc_timeout, nullptr, nullptr}),
                             &registry, store->get(), &repo, &timer, &clock);
  ASSERT_OK(c);
  constexpr int kNodes = 1000, kPer = 10;
  for (int n = 0; n < kNodes; ++n) {
    shutter::v1::HeartbeatRequest r;
    r.set_node_id(absl::StrCat("n", n));
    r.set_address(absl::StrCat("n", n, ":1"));
    r.set_checkpoint_capacity(4);
    r.mutable_instance()->set_instance_id(absl::StrCat("i", n));
    for (int p = 0; p < kPer; ++p) {
      auto* hp = r.add_partitions();
      hp->set_partition_id(n * kPer + p);
      hp->set_role(shutter::v1::PARTITION_ROLE_LEADER);
      hp->set_leader_epoch(3);
    }
    ASSERT_OK(registry.Heartbeat(r));
    (*c)->SetNodeLimit(r.node_id(), 4);
  }
  auto id = StartSnapshot(**c, {});
  ASSERT_OK(id);
  shutter::v1::SnapshotSummary sum;
  ASSERT_TRUE(testing::PollUntil(
      [&] {
        sum = (*c)->ListSnapshots(1)[0];
        return sum.state() != shutter::v1::SNAPSHOT_STATE_RUNNING;
      },
      absl::Seconds(120)));
  EXPECT_EQ(sum.state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
  EXPECT_EQ(sum.partitions_published(), static_cast<uint32_t>(kNodes * kPer));
  EXPECT_EQ(transport.calls(), kNodes * kPer);
  auto cm = repo.ReadClusterManifest(*id);
  ASSERT_OK(cm);
  ASSERT_EQ(cm->partitions_size(), kNodes * kPer);
  for (int p = 0; p < kNodes * kPer; p += 997) {
    EXPECT_EQ(cm->partitions(p).partition_id(), static_cast<uint32_t>(p));
    EXPECT_EQ(cm->partitions(p).applied_index(), static_cast<uint64_t>(p));
    EXPECT_EQ(cm->partitions(p).node_id(), absl::StrCat("n", p / kPer));
    EXPECT_EQ(cm->partitions(p).leader_epoch(), 3u);
  }
  // Group commit: far fewer writes than transitions (3 per partition).
  auto stats = (*c)->StoreStats();
  EXPECT_LT(stats.groups, static_cast<uint64_t>(kNodes * kPer));
  (*c)->Shutdown();
  c->reset();
  // Reloaded from per-task records, the job is whole and final.
  auto all = (*store)->LoadAll();
  ASSERT_OK(all);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].state(), shutter::v1::SNAPSHOT_STATE_COMMITTED);
  EXPECT_EQ((*all)[0].partitions_size(), kNodes * kPer);
  for (const auto& t : (*all)[0].partitions()) {
    ASSERT_EQ(t.state(), shutter::v1::PARTITION_TASK_STATE_PUBLISHED);
    ASSERT_EQ(t.attempts(), 1u);
  }
}

}  // namespace
}  // namespace shutter::controller
