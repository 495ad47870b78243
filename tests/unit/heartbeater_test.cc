// Heartbeater's timing against a stand-in controller over real gRPC on
// loopback (unary heartbeats: the stand-in serves no stream, as an older
// controller): a role change is reported at once rather than at the next
// tick, and a failed beat is retried within a fraction of the interval.
// Both run with an interval of an hour, so only those paths can send the
// beats the tests wait for.

#include "node/heartbeater.h"

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

class HeartbeaterTest : public ::testing::Test {
 protected:
  // Partitions 0 and 1, node leads 0; a controller refusing `refuse` beats.
  void Start(int refuse) {
    auto h = NodeHost::Open({tmp_.Sub("data"), {0, 1}, {0}});
    ASSERT_OK(h);
    host_ = std::move(h).value();
    ASSERT_OK(host_->TakeLeadership());
    auto r = snapshot::OpenRepository(tmp_.Sub("repo"));
    ASSERT_OK(r);
    repo_ = std::move(r).value();
    controller_ = std::make_unique<StandInController>(refuse);
    auto s = StartGrpcServer("127.0.0.1:0", {controller_.get()});
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
    heartbeater_->Start();
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

}  // namespace
}  // namespace shutter::node
