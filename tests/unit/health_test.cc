// The daemons' grpc.health.v1 service (common/health.h) and the listener
// self-check that calls it (ListenerWatchdog), over real gRPC on loopback
// with the generated client a health prober would use.

#include "common/health.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/rpc.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "testing/process.h"
#include "testing/status_matchers.h"

namespace shutter {
namespace {

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

class HealthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = StartGrpcServer("127.0.0.1:0", {});
    ASSERT_OK(s);
    server_ = std::move(s).value();
    target_ = absl::StrCat("127.0.0.1:", server_.port);
    stub_ = Health::NewStub(MakeChannel(target_));
  }
  void TearDown() override { StopGrpcServer(server_, absl::Seconds(5)); }

  grpc::Status Check(const std::string& service, HealthCheckResponse* r) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    HealthCheckRequest req;
    req.set_service(service);
    return stub_->Check(&ctx, req, r);
  }

  RunningServer server_;
  std::string target_;
  std::unique_ptr<Health::Stub> stub_;
};

TEST_F(HealthTest, CheckAnswersTheServersStatus) {
  HealthCheckResponse r;
  ASSERT_TRUE(Check("", &r).ok());
  EXPECT_EQ(r.status(), HealthCheckResponse::SERVING);
  server_.health->SetServing(false);
  ASSERT_TRUE(Check("", &r).ok());
  EXPECT_EQ(r.status(), HealthCheckResponse::NOT_SERVING);
  grpc::Status s = Check("shutter.v1.NoSuchService", &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
}

TEST_F(HealthTest, WatchSendsEachChangeAndEndsWithTheServer) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  HealthCheckRequest req;
  auto reader = stub_->Watch(&ctx, req);
  HealthCheckResponse r;
  ASSERT_TRUE(reader->Read(&r));
  EXPECT_EQ(r.status(), HealthCheckResponse::SERVING);
  server_.health->SetServing(false);
  ASSERT_TRUE(reader->Read(&r));
  EXPECT_EQ(r.status(), HealthCheckResponse::NOT_SERVING);
  server_.health->SetServing(true);
  ASSERT_TRUE(reader->Read(&r));
  EXPECT_EQ(r.status(), HealthCheckResponse::SERVING);
  // A stopping server says NOT_SERVING, then ends the watch rather than
  // waiting for it until its deadline.
  const absl::Time stop = absl::Now();
  StopGrpcServer(server_, absl::Seconds(5));
  EXPECT_LT(absl::Now() - stop, absl::Seconds(3));
  while (reader->Read(&r)) {
    EXPECT_EQ(r.status(), HealthCheckResponse::NOT_SERVING);
  }
  EXPECT_FALSE(reader->Finish().ok());
}

TEST_F(HealthTest, WatchOfAnUnknownServiceSaysSoAndStaysOpen) {
  grpc::ClientContext ctx;
  HealthCheckRequest req;
  req.set_service("shutter.v1.NoSuchService");
  auto reader = stub_->Watch(&ctx, req);
  HealthCheckResponse r;
  ASSERT_TRUE(reader->Read(&r));
  EXPECT_EQ(r.status(), HealthCheckResponse::SERVICE_UNKNOWN);
  // The caller goes away: the server's thread is given back (the next
  // watchers all fit).
  ctx.TryCancel();
  EXPECT_FALSE(reader->Finish().ok());
}

TEST_F(HealthTest, WatchersAreCappedAndCancelledOnesFreeTheirPlace) {
  std::vector<std::unique_ptr<grpc::ClientContext>> ctxs;
  std::vector<std::unique_ptr<grpc::ClientReader<HealthCheckResponse>>> open;
  HealthCheckResponse r;
  for (int i = 0; i < HealthService::kMaxWatchers; ++i) {
    ctxs.push_back(std::make_unique<grpc::ClientContext>());
    open.push_back(stub_->Watch(ctxs.back().get(), HealthCheckRequest()));
    ASSERT_TRUE(open.back()->Read(&r)) << i;  // being served
  }
  {
    grpc::ClientContext ctx;
    auto over = stub_->Watch(&ctx, HealthCheckRequest());
    EXPECT_FALSE(over->Read(&r));
    grpc::Status s = over->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << s.error_message();
  }
  // Check is not a watcher: still answered.
  ASSERT_TRUE(Check("", &r).ok());
  ctxs[0]->TryCancel();
  EXPECT_FALSE(open[0]->Finish().ok());
  // Its place is free once the server has noticed (within kCancelPoll).
  ASSERT_TRUE(testing::PollUntil(
      [&] {
        grpc::ClientContext ctx;
        auto again = stub_->Watch(&ctx, HealthCheckRequest());
        HealthCheckResponse first;
        const bool served = again->Read(&first);
        ctx.TryCancel();
        again->Finish().IgnoreError();
        return served;
      },
      absl::Seconds(10)));
  for (size_t i = 1; i < ctxs.size(); ++i) ctxs[i]->TryCancel();
  for (size_t i = 1; i < open.size(); ++i) open[i]->Finish().IgnoreError();
}

TEST_F(HealthTest, SelfCheckPassesWhileServingAndFiresWhenTheListenerIsGone) {
  absl::Notification dead;
  {
    ListenerWatchdog dog(target_, absl::Milliseconds(50), 3,
                         [&] { dead.Notify(); });
    // Many probes go through while the server serves: none fails.
    EXPECT_FALSE(dead.WaitForNotificationWithTimeout(absl::Seconds(1)));
  }
  ListenerWatchdog dog(target_, absl::Milliseconds(50), 3,
                       [&] { dead.Notify(); });
  StopGrpcServer(server_, absl::Seconds(5));
  EXPECT_TRUE(dead.WaitForNotificationWithTimeout(absl::Seconds(30)));
}

}  // namespace
}  // namespace shutter
