#include "node/checkpoint_taker.h"

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <vector>

#include "common/error_reason.h"
#include "gtest/gtest.h"
#include "snapshot/blob_store.h"
#include "snapshot/repository.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter::node {
namespace {

using ::shutter::testing::StatusIs;
using shutter::v1::CreateCheckpointRequest;
namespace stdfs = std::filesystem;

class CheckpointTakerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto h = NodeHost::Open({tmp_.Sub("data"), {0, 1, 2}, {0, 1}});
    ASSERT_OK(h);
    host_ = std::move(h).value();
    ASSERT_OK(host_->TakeLeadership());
    auto r = snapshot::OpenRepository(tmp_.Sub("repo"));
    ASSERT_OK(r);
    repo_ = std::move(r).value();
    // A crash left debris in staging: Create() must sweep it.
    stdfs::create_directories(tmp_.Sub("data/staging/old-snap.00000"));
    auto t = CheckpointTaker::Create(Opts("data/staging", 2), host_.get(),
                                     repo_.get(), &clock_);
    ASSERT_OK(t);
    taker_ = std::move(t).value();
    taker_->SetServing(true);
    for (uint32_t p : {0u, 1u}) {
      ASSERT_OK(host_->Find(p)->Write(
          {{partition::Mutation::Op::kPut, "a", "1"}}, false));
    }
  }

  CheckpointTaker::Options Opts(const std::string& staging, int capacity) {
    CheckpointTaker::Options o;
    o.node_id = "n1";
    o.instance_id = "inst-1";
    o.staging_dir = tmp_.Sub(staging);
    o.capacity = capacity;
    return o;
  }

  CreateCheckpointRequest Req(const std::string& snap, uint32_t p,
                              uint64_t epoch) {
    CreateCheckpointRequest r;
    r.set_snapshot_id(snap);
    r.set_partition_id(p);
    r.set_expected_leader_epoch(epoch);
    return r;
  }

  bool StagingEmpty() { return stdfs::is_empty(tmp_.Sub("data/staging")); }

  testing::TempDir tmp_;
  FakeClock clock_;
  std::unique_ptr<NodeHost> host_;
  std::unique_ptr<snapshot::Repository> repo_;
  // Local path of a repository key (the repository is a directory here).
  std::string Abs(const std::string& key) const {
    return repo_->blob_store()->LocalPath(key);
  }
  std::unique_ptr<CheckpointTaker> taker_;
};

TEST_F(CheckpointTakerTest, CheckpointsRunAtLowIoPriority) {
  std::string seen;
  int nice = -1;
  const int own_nice = ThreadNice();
  CheckpointTaker::Options o = Opts("data/staging2", 1);
  o.nice = 12;
  o.test_before_checkpoint = [&](const CreateCheckpointRequest&) {
    seen = ThreadIoClassName();
    nice = ThreadNice();
  };
  auto t = CheckpointTaker::Create(o, host_.get(), repo_.get(), &clock_);
  ASSERT_OK(t);
  (*t)->SetServing(true);
  ASSERT_OK((*t)->CreateCheckpointSync(Req("io", 0, 1)));
  EXPECT_EQ(seen, "best-effort/7");
  EXPECT_EQ(nice, std::max(12, own_nice));  // lowered, never raised
  EXPECT_EQ(ThreadNice(), own_nice);        // only the worker's
  EXPECT_EQ(ParseIoClass("idle").value(), IoClass::kIdle);
  EXPECT_FALSE(ParseIoClass("fast").ok());
}

TEST_F(CheckpointTakerTest, PublishesCheckpointWithMetaFromTheCheckpoint) {
  EXPECT_TRUE(StagingEmpty());  // start-up sweep
  auto r = taker_->CreateCheckpointSync(Req("s1", 0, 1));
  ASSERT_OK(r);
  EXPECT_EQ(r->manifest().applied_index(), 1u);
  EXPECT_EQ(r->manifest().leader_epoch(), 1u);
  EXPECT_EQ(r->manifest().node_id(), "n1");
  EXPECT_EQ(r->manifest_path(), "snapshots/s1/partitions/00000/MANIFEST.json");
  EXPECT_GT(r->manifest().files_size(), 0);
  EXPECT_OK(repo_->VerifyPartition(r->manifest()));
  EXPECT_TRUE(StagingEmpty());
  ASSERT_OK(repo_->DownloadPartition(r->manifest(), tmp_.Sub("restored")));
  auto ro = partition::ReadOnlyPartition::Open(tmp_.Sub("restored"));
  ASSERT_OK(ro);
  EXPECT_EQ(*(*ro)->Get("a"), "1");
}

TEST_F(CheckpointTakerTest, StaleEpochIsRejectedAndPublishesNothing) {
  auto r = taker_->CreateCheckpointSync(Req("s1", 0, 0));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kFailedPrecondition,
                          "request expects epoch 0, node n1 leads at epoch 1"));
  r = taker_->CreateCheckpointSync(Req("s1", 0, 2));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kFailedPrecondition, "epoch 2"));
  EXPECT_FALSE(stdfs::exists(Abs("snapshots/s1")));
  EXPECT_TRUE(StagingEmpty());
  EXPECT_EQ(taker_->GetStats().published, 0u);
}

TEST_F(CheckpointTakerTest, RejectsFollowerUnknownPartitionAndBadIds) {
  EXPECT_THAT(
      taker_->CreateCheckpointSync(Req("s1", 2, 0)),
      StatusIs(absl::StatusCode::kFailedPrecondition, "not the leader"));
  EXPECT_THAT(taker_->CreateCheckpointSync(Req("s1", 9, 1)),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(taker_->CreateCheckpointSync(Req("../x", 0, 1)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(stdfs::exists(Abs("snapshots/s1")));
}

TEST_F(CheckpointTakerTest, RepeatReturnsThePublishedManifest) {
  auto first = taker_->CreateCheckpointSync(Req("s1", 1, 1));
  ASSERT_OK(first);
  ASSERT_OK(host_->Find(1)->Write({{partition::Mutation::Op::kPut, "b", "2"}},
                                  false));
  auto second = taker_->CreateCheckpointSync(Req("s1", 1, 1));
  ASSERT_OK(second);
  EXPECT_EQ(second->manifest().SerializeAsString(),
            first->manifest().SerializeAsString());
  EXPECT_EQ(second->manifest().applied_index(), 1u);
}

// A clock that moves 7 ms each time it is read: every phase of a
// checkpoint takes a known, non-zero time.
class TickingClock : public Clock {
 public:
  absl::Time Now() const override {
    absl::MutexLock l(&mu_);
    now_ += absl::Milliseconds(7);
    return now_;
  }
  void SleepFor(absl::Duration d) override {
    absl::MutexLock l(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  mutable absl::Time now_ ABSL_GUARDED_BY(mu_) = absl::UnixEpoch();
};

TEST_F(CheckpointTakerTest, StatsSumEachPhaseOfNewlyWrittenCheckpoints) {
  TickingClock ticking;
  auto t = CheckpointTaker::Create(Opts("data/staging2", 2), host_.get(),
                                   repo_.get(), &ticking);
  ASSERT_OK(t);
  (*t)->SetServing(true);
  auto first = (*t)->CreateCheckpointSync(Req("s1", 0, 1));
  ASSERT_OK(first);
  auto second = (*t)->CreateCheckpointSync(Req("s1", 1, 1));
  ASSERT_OK(second);
  EXPECT_GT(first->checkpoint_millis(), 0);
  EXPECT_GT(first->publish_millis(), 0);
  auto st = (*t)->GetStats();
  EXPECT_EQ(st.checkpoint_phase_millis,
            first->checkpoint_millis() + second->checkpoint_millis());
  EXPECT_EQ(st.publish_phase_millis,
            first->publish_millis() + second->publish_millis());
  // An answer from the repository took no checkpoint: it adds nothing.
  auto repeat = (*t)->CreateCheckpointSync(Req("s1", 0, 1));
  ASSERT_OK(repeat);
  EXPECT_TRUE(repeat->already_published());
  EXPECT_EQ((*t)->GetStats().checkpoint_phase_millis,
            st.checkpoint_phase_millis);
  EXPECT_EQ((*t)->GetStats().publish_phase_millis, st.publish_phase_millis);
}

TEST_F(CheckpointTakerTest, RepeatWhileInProgressJoinsIt) {
  // A second taker over the same host, whose checkpoints pause until the
  // test has sent the repeated request.
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  CheckpointTaker::Options o = Opts("data/staging2", 2);
  o.test_before_checkpoint = [&](const CreateCheckpointRequest&) {
    std::unique_lock<std::mutex> l(mu);
    cv.wait_for(l, std::chrono::seconds(10), [&] { return release; });
  };
  auto t = CheckpointTaker::Create(o, host_.get(), repo_.get(), &clock_);
  ASSERT_OK(t);
  (*t)->SetServing(true);
  std::vector<absl::StatusOr<shutter::v1::CreateCheckpointResponse>> results;
  auto record = [&](absl::StatusOr<shutter::v1::CreateCheckpointResponse> r) {
    std::lock_guard<std::mutex> l(mu);
    results.push_back(std::move(r));
    cv.notify_all();
  };
  (*t)->CreateCheckpoint(Req("s7", 0, 1), record);
  (*t)->CreateCheckpoint(Req("s7", 0, 1), record);  // joins the first
  EXPECT_EQ((*t)->GetStats().joined, 1u);
  EXPECT_EQ((*t)->GetStats().in_flight, 1u);
  {
    std::lock_guard<std::mutex> l(mu);
    release = true;
    cv.notify_all();
  }
  std::unique_lock<std::mutex> l(mu);
  ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(10),
                          [&] { return results.size() == 2; }));
  ASSERT_OK(results[0]);
  ASSERT_OK(results[1]);
  EXPECT_EQ(results[0]->manifest().SerializeAsString(),
            results[1]->manifest().SerializeAsString());
  EXPECT_EQ((*t)->GetStats().published, 1u);  // one checkpoint, two answers
}

TEST_F(CheckpointTakerTest, HeldRequestsFollowTheControllersLimit) {
  // Capacity 2, the controller's limit 1: of three requests one runs and
  // two wait; raising the limit starts one more; never above capacity.
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  int started = 0;
  CheckpointTaker::Options o = Opts("data/staging5", 2);
  o.test_before_checkpoint = [&](const CreateCheckpointRequest&) {
    std::unique_lock<std::mutex> l(mu);
    ++started;
    cv.notify_all();
    cv.wait_for(l, std::chrono::seconds(10), [&] { return release; });
  };
  auto t = CheckpointTaker::Create(o, host_.get(), repo_.get(), &clock_);
  ASSERT_OK(t);
  (*t)->SetServing(true);
  EXPECT_EQ((*t)->GetStats().limit, 2u);  // the capacity, until told
  (*t)->SetLimit(1);
  std::vector<int64_t> waited;
  auto record = [&](absl::StatusOr<shutter::v1::CreateCheckpointResponse> r) {
    EXPECT_OK(r);
    std::lock_guard<std::mutex> l(mu);
    waited.push_back(r.ok() ? r->waited_millis() : -1);
    cv.notify_all();
  };
  (*t)->CreateCheckpoint(Req("la", 0, 1), record);
  (*t)->CreateCheckpoint(Req("la", 1, 1), record);
  (*t)->CreateCheckpoint(Req("lb", 0, 1), record);
  {
    std::unique_lock<std::mutex> l(mu);
    ASSERT_TRUE(
        cv.wait_for(l, std::chrono::seconds(10), [&] { return started >= 1; }));
  }
  EXPECT_EQ((*t)->GetStats().in_flight, 3u);
  EXPECT_EQ((*t)->GetStats().running, 1u);
  EXPECT_EQ((*t)->GetStats().limit, 1u);
  clock_.Advance(absl::Milliseconds(250));  // the two others wait that long
  (*t)->SetLimit(100);                      // clamped to the capacity
  {
    std::unique_lock<std::mutex> l(mu);
    ASSERT_TRUE(
        cv.wait_for(l, std::chrono::seconds(10), [&] { return started >= 2; }));
  }
  EXPECT_EQ((*t)->GetStats().running, 2u);
  EXPECT_EQ((*t)->GetStats().limit, 2u);
  {
    std::unique_lock<std::mutex> l(mu);
    release = true;
    cv.notify_all();
    ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(10),
                            [&] { return waited.size() == 3; }));
  }
  EXPECT_EQ((*t)->GetStats().peak_running, 2u);
  std::sort(waited.begin(), waited.end());
  EXPECT_EQ(waited, (std::vector<int64_t>{0, 250, 250}));
}

TEST_F(CheckpointTakerTest, CancelStopsARunningCheckpointBeforeItPublishes) {
  std::mutex mu;
  std::condition_variable cv;
  bool release = false, started = false;
  CheckpointTaker::Options o = Opts("data/staging4", 1);
  o.test_before_checkpoint = [&](const CreateCheckpointRequest&) {
    std::unique_lock<std::mutex> l(mu);
    started = true;
    cv.notify_all();
    cv.wait_for(l, std::chrono::seconds(10), [&] { return release; });
  };
  auto t = CheckpointTaker::Create(o, host_.get(), repo_.get(), &clock_);
  ASSERT_OK(t);
  (*t)->SetServing(true);
  absl::StatusOr<shutter::v1::CreateCheckpointResponse> result;
  bool done = false;
  (*t)->CreateCheckpoint(
      Req("s9", 0, 1),
      [&](absl::StatusOr<shutter::v1::CreateCheckpointResponse> r) {
        std::lock_guard<std::mutex> l(mu);
        result = std::move(r);
        done = true;
        cv.notify_all();
      });
  {
    std::unique_lock<std::mutex> l(mu);
    ASSERT_TRUE(
        cv.wait_for(l, std::chrono::seconds(10), [&] { return started; }));
  }
  (*t)->CancelSnapshot("s9");  // while it is running
  {
    std::unique_lock<std::mutex> l(mu);
    release = true;
    cv.notify_all();
    ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(10), [&] { return done; }));
  }
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kCancelled, "cancelled"));
  EXPECT_FALSE(stdfs::exists(Abs("snapshots/s9/partitions/00000")));
  EXPECT_TRUE(stdfs::is_empty(tmp_.Sub("data/staging4")));
  // Later requests for the snapshot are refused too.
  EXPECT_THAT((*t)->CreateCheckpointSync(Req("s9", 1, 1)),
              StatusIs(absl::StatusCode::kCancelled));
  EXPECT_OK((*t)->CreateCheckpointSync(Req("s10", 1, 1)));
}

TEST_F(CheckpointTakerTest, FreeSpaceFloorRefusesWithTheNumbers) {
  CheckpointTaker::Options o = Opts("data/staging3", 1);
  o.data_dir = tmp_.Sub("data");
  o.min_free_bytes = uint64_t{1} << 60;  // more than any disk has
  auto t = CheckpointTaker::Create(o, host_.get(), repo_.get(), &clock_);
  ASSERT_OK(t);
  (*t)->SetServing(true);
  auto r = (*t)->CreateCheckpointSync(Req("s8", 0, 1));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kResourceExhausted,
                          "MiB free on the filesystem of"));
  EXPECT_NE(r.status().message().find("below the floor of 1099511627776 MiB"),
            std::string::npos)
      << r.status();
  EXPECT_FALSE(stdfs::exists(Abs("snapshots/s8")));
  EXPECT_TRUE(stdfs::is_empty(tmp_.Sub("data/staging3")));
}

TEST_F(CheckpointTakerTest, ShutdownFailsQueuedWorkWithUnavailable) {
  taker_->Shutdown();
  auto r = taker_->CreateCheckpointSync(Req("s9", 0, 1));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kUnavailable, "shutting down"));
  EXPECT_EQ(GetErrorReason(r.status()), ErrorReason::kNodeUnavailable);
  EXPECT_EQ(taker_->GetStats().in_flight, 0u);
}

TEST_F(CheckpointTakerTest, RefusalsCarryTheReasonTheControllerActsOn) {
  auto reason = [&](const CreateCheckpointRequest& r) {
    return GetErrorReason(taker_->CreateCheckpointSync(r).status());
  };
  EXPECT_EQ(reason(Req("s10", 0, 99)), ErrorReason::kStaleEpoch);
  EXPECT_EQ(reason(Req("s10", 2, 1)), ErrorReason::kNotLeader);
  EXPECT_EQ(reason(Req("s10", 7, 1)), ErrorReason::kNotHosted);
  EXPECT_EQ(reason(Req("../x", 0, 1)), ErrorReason::kInvalidRequest);
  auto wrong = Req("s10", 0, 1);
  wrong.set_expected_instance_id("someone-else");
  EXPECT_EQ(reason(wrong), ErrorReason::kWrongIncarnation);
  taker_->CancelSnapshot("s11");
  EXPECT_EQ(reason(Req("s11", 0, 1)), ErrorReason::kCancelled);
  // A long id is quoted, not echoed whole.
  auto s = taker_->CreateCheckpointSync(Req(std::string(10000, 'a'), 0, 1));
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_LT(s.status().message().size(), 300u);
  // The right incarnation is served; so is a request naming none.
  auto right = Req("s12", 0, 1);
  right.set_expected_instance_id("inst-1");
  EXPECT_OK(taker_->CreateCheckpointSync(right));
  EXPECT_OK(taker_->CreateCheckpointSync(Req("s13", 0, 1)));
}

TEST_F(CheckpointTakerTest, RefusesUntilServingAndAfterDrain) {
  auto t = CheckpointTaker::Create(Opts("data/staging2", 1), host_.get(),
                                   repo_.get(), &clock_);
  ASSERT_OK(t);
  auto r = (*t)->CreateCheckpointSync(Req("s14", 0, 1));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kUnavailable, "starting"));
  EXPECT_EQ(GetErrorReason(r.status()), ErrorReason::kNodeUnavailable);
  (*t)->SetServing(true);
  EXPECT_OK((*t)->CreateCheckpointSync(Req("s14", 0, 1)));
  (*t)->Drain();
  r = (*t)->CreateCheckpointSync(Req("s15", 0, 1));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kUnavailable, "shutting down"));
  EXPECT_EQ(GetErrorReason(r.status()), ErrorReason::kNodeUnavailable);
}

}  // namespace
}  // namespace shutter::node
