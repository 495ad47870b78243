// Heartbeater's timing against a stand-in controller over real gRPC on
// loopback (unary heartbeats: the stand-in serves no stream, as an older
// controller): a role change is reported at once rather than at the next
// tick, and a failed beat is retried within a fraction of the interval.
// Both run with an interval of an hour, so only those paths can send the
// beats the tests wait for. And on streams: one that ended between two
// beats costs no beat.

#include "node/heartbeater.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "common/rpc.h"
#include "gtest/gtest.h"
#include "node/node_host.h"
#include "snapshot/repository.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace shutter::node {
namespace {

using v1::HeartbeatRequest;
using v1::HeartbeatResponse;

constexpr absl::Duration kWait = absl::Seconds(20);  // bounded waits

// Answers unary heartbeats, refusing the first `refuse` with UNAVAILABLE,
// and keeps what each accepted beat said of the partitions it reported.
class StandInController final : public v1::ControllerService::CallbackService {
 public:
  explicit StandInController(int refuse) : refuse_(refuse) {}

  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const HeartbeatRequest* req,
                                      HeartbeatResponse*) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    absl::MutexLock l(&mu_);
    ++beats_;
    if (refuse_ > 0) {
      --refuse_;
      reactor->Finish(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, "starting up"));
      return reactor;
    }
    accepted_.push_back(*req);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  // Waits until an accepted beat reported partition `p` as led.
  bool WaitLeaderReported(uint32_t p) {
    absl::MutexLock l(&mu_);
    auto reported = [this, p]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const HeartbeatRequest& r : accepted_) {
        for (const auto& hp : r.partitions()) {
          if (hp.partition_id() == p &&
              hp.role() == v1::PARTITION_ROLE_LEADER) {
            return true;
          }
        }
      }
      return false;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reported), kWait);
  }

  // Waits until `n` beats were accepted.
  bool WaitAccepted(size_t n) {
    absl::MutexLock l(&mu_);
    auto done = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return accepted_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), kWait);
  }

  int beats() {
    absl::MutexLock l(&mu_);
    return beats_;
  }

 private:
  absl::Mutex mu_;
  int refuse_ ABSL_GUARDED_BY(mu_);
  int beats_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<HeartbeatRequest> accepted_ ABSL_GUARDED_BY(mu_);
};

// Serves heartbeat streams: answers a stream's first beat and ends the
// stream with the answer, as a controller that restarts between two beats
// would leave it.
class EndsEachStream final : public v1::ControllerService::CallbackService {
 public:
  grpc::ServerBidiReactor<HeartbeatRequest, HeartbeatResponse>* HeartbeatStream(
      grpc::CallbackServerContext*) override {
    streams_.fetch_add(1);
    return new Reactor;
  }
  int streams() const { return streams_.load(); }

 private:
  class Reactor final
      : public grpc::ServerBidiReactor<HeartbeatRequest, HeartbeatResponse> {
   public:
    Reactor() { StartRead(&req_); }
    void OnReadDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status::OK);
        return;
      }
      StartWriteAndFinish(&resp_, grpc::WriteOptions(), grpc::Status::OK);
    }
    void OnDone() override { delete this; }

   private:
    HeartbeatRequest req_;
    HeartbeatResponse resp_;
  };
  std::atomic<int> streams_{0};
};

class HeartbeaterTest : public ::testing::Test {
 protected:
  // Partitions 0 and 1, node leads 0; a controller refusing `refuse` beats.
  void Start(int refuse) {
    controller_ = std::make_unique<StandInController>(refuse);
    ASSERT_NO_FATAL_FAILURE(Serve(controller_.get(), /*loop=*/true));
  }
  // The node as Start's, heartbeating to `service`; its loop started if
  // `loop`.
  void Serve(grpc::Service* service, bool loop) {
    auto h = NodeHost::Open({tmp_.Sub("data"), {0, 1}, {0}});
    ASSERT_OK(h);
    host_ = std::move(h).value();
    ASSERT_OK(host_->TakeLeadership());
    auto r = snapshot::OpenRepository(tmp_.Sub("repo"));
    ASSERT_OK(r);
    repo_ = std::move(r).value();
    auto s = StartGrpcServer("127.0.0.1:0", {service});
    ASSERT_OK(s);
    server_ = std::move(s).value();
    Heartbeater::Options o;
    o.node_id = "n1";
    o.instance.instance_id = "inst-1";
    o.advertise_address = "127.0.0.1:1";
    o.controller_addresses = {absl::StrCat("127.0.0.1:", server_.port)};
    o.interval = absl::Hours(1);
    heartbeater_ = std::make_unique<Heartbeater>(o, host_.get(), repo_.get());
    host_->SetRolesChangedListener(
        [h = heartbeater_.get()] { h->ReportSoon(); });
    if (loop) heartbeater_->Start();
  }
  void TearDown() override {
    if (host_) host_->SetRolesChangedListener(nullptr);
    if (heartbeater_) heartbeater_->Stop();
    if (server_.server) StopGrpcServer(server_, absl::ZeroDuration());
  }

  testing::TempDir tmp_;
  std::unique_ptr<NodeHost> host_;
  std::unique_ptr<snapshot::Repository> repo_;
  std::unique_ptr<StandInController> controller_;
  RunningServer server_;
  std::unique_ptr<Heartbeater> heartbeater_;
};

TEST_F(HeartbeaterTest, ARoleChangeIsReportedAtOnceNotAtTheNextTick) {
  ASSERT_NO_FATAL_FAILURE(Start(/*refuse=*/0));
  ASSERT_TRUE(controller_->WaitAccepted(1));  // Start's first beat
  auto store = host_->Acquire(1);
  ASSERT_OK(store);
  ASSERT_OK((*store)->TakeLeadership());
  host_->NotifyRolesChanged();
  EXPECT_TRUE(controller_->WaitLeaderReported(1));
}

TEST_F(HeartbeaterTest, AFailedBeatIsRetriedWithinAFractionOfTheInterval) {
  // 100 + 200 + 400 ms of retries, not three hours of ticks.
  ASSERT_NO_FATAL_FAILURE(Start(/*refuse=*/3));
  EXPECT_TRUE(controller_->WaitAccepted(1));
  EXPECT_EQ(controller_->beats(), 4);
}

// The node's stream keeps no read open between beats (heartbeat_stream.h),
// so a stream that ended since the last beat is seen by the next one,
// which then goes out on a new stream rather than failing.
TEST_F(HeartbeaterTest, AStreamThatEndedBetweenBeatsCostsNoBeat) {
  EndsEachStream service;
  ASSERT_NO_FATAL_FAILURE(Serve(&service, /*loop=*/false));
  for (int beat = 1; beat <= 3; ++beat) {
    EXPECT_OK(heartbeater_->Register(kWait)) << "beat " << beat;
  }
  EXPECT_EQ(service.streams(), 3);
}

}  // namespace
}  // namespace shutter::node
