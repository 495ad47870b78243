// HeartbeatStream (the node's side of ControllerService.HeartbeatStream)
// against the controller's ControllerGate and against stand-ins for other
// controllers, over real gRPC on loopback: a follower ends the stream
// naming the leader, a stopping controller ends every stream and refuses
// new ones, a controller without streams says UNIMPLEMENTED (the node
// then falls back to unary calls), a controller that does not answer
// costs one deadline. Beats answered by a leading controller are covered
// by every integration test (the reference node heartbeats this way; see
// metrics_test's shutter_controller_heartbeat_streams).

#include "node/heartbeat_stream.h"

#include <memory>
#include <string>

#include "common/metrics.h"
#include "common/rpc.h"
#include "controller/serving_gate.h"
#include "gtest/gtest.h"
#include "testing/process.h"
#include "testing/status_matchers.h"

namespace shutter {
namespace {

using node::HeartbeatStream;
using v1::ControllerService;
using v1::HeartbeatRequest;
using v1::HeartbeatResponse;

constexpr char kLeader[] = "10.0.0.1:7000";

HeartbeatRequest Beat(const std::string& node_id) {
  HeartbeatRequest r;
  r.set_node_id(node_id);
  return r;
}

// One beat on `stream` (10 s deadline); `leader` gets a redirect's.
absl::Status BeatOnce(HeartbeatStream& stream, std::string* leader) {
  HeartbeatResponse resp;
  return stream.Exchange(Beat("n1"), absl::Now() + absl::Seconds(10), &resp,
                         leader);
}

// Serves `service` on loopback, as the controller serves it (a
// ControllerGate's queue added, started, stopped); the stub reaches it.
class Served {
 public:
  explicit Served(grpc::Service* service,
                  controller::ControllerGate* gate = nullptr)
      : gate_(gate) {
    auto s = StartGrpcServer("127.0.0.1:0", {service}, {},
                             [gate](grpc::ServerBuilder& b) {
                               if (gate != nullptr) gate->AddQueue(b);
                             });
    EXPECT_OK(s);
    server_ = std::move(s).value();
    if (gate_ != nullptr) gate_->Start();
    stub_ = ControllerService::NewStub(
        MakeChannel(absl::StrCat("127.0.0.1:", server_.port)));
  }
  ~Served() {
    if (gate_ != nullptr) gate_->CloseStreams();
    StopGrpcServer(server_, absl::Seconds(5));
    if (gate_ != nullptr) gate_->Stop();
  }
  ControllerService::Stub* stub() { return stub_.get(); }

 private:
  controller::ControllerGate* const gate_;
  RunningServer server_;
  std::unique_ptr<ControllerService::Stub> stub_;
};

// A controller with no term, which follows kLeader, served as the
// controller serves it.
struct Follower {
  controller::ServingGate gate{[] { return std::string(kLeader); },
                               [] { return std::string("127.0.0.1:1"); }};
  controller::ControllerGate service{&gate};
  Served served{&service, &service};
};

TEST(HeartbeatStreamTest, AFollowerEndsTheStreamNamingTheLeader) {
  Follower follower;
  HeartbeatStream stream(follower.served.stub());
  std::string leader;
  absl::Status s = BeatOnce(stream, &leader);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_EQ(leader, kLeader);
  EXPECT_TRUE(stream.done());
  // Ended: the next beat fails at once with the same answer.
  leader.clear();
  s = BeatOnce(stream, &leader);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_EQ(leader, kLeader);
}

TEST(HeartbeatStreamTest, CloseStreamsEndsOpenStreamsAndRefusesNewOnes) {
  Follower follower;
  controller::ControllerGate& service = follower.service;
  auto open = std::make_unique<HeartbeatStream>(follower.served.stub());
  ASSERT_TRUE(testing::PollUntil([&] { return service.open_streams() == 1; },
                                 absl::Seconds(10)));
  service.CloseStreams();
  EXPECT_TRUE(testing::PollUntil([&] { return service.open_streams() == 0; },
                                 absl::Seconds(10)));
  // No read is open between beats: the next beat sees the end, at once.
  // A stream cancelled by a stopping controller reads as unreachable.
  std::string leader;
  absl::Status s = BeatOnce(*open, &leader);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_TRUE(open->done());
  HeartbeatStream fresh(follower.served.stub());
  s = BeatOnce(fresh, &leader);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_NE(s.message().find("shutting down"), absl::string_view::npos) << s;
}

// A controller of a version without streams.
class UnaryOnly final : public ControllerService::Service {
  grpc::Status Heartbeat(grpc::ServerContext*, const HeartbeatRequest*,
                         HeartbeatResponse*) override {
    return grpc::Status::OK;
  }
};

TEST(HeartbeatStreamTest, AControllerWithoutStreamsSaysUnimplemented) {
  UnaryOnly service;
  Served served(&service);
  HeartbeatStream stream(served.stub());
  std::string leader;
  absl::Status s = BeatOnce(stream, &leader);
  EXPECT_TRUE(absl::IsUnimplemented(s)) << s;
}

// The process-wide RPC observer of StartDaemonMetrics outlives its
// registry: a call served after the registry is destroyed (another server
// of a process that embeds a node or controller, or a test running after
// one) is not recorded, rather than written into freed memory (seen: a
// "Mutex corrupt" abort in node_test after InProcessTest).
TEST(DaemonMetricsTest, CallsEndingAfterTheRegistryIsGoneAreNotRecorded) {
  auto registry = std::make_unique<metrics::Registry>();
  ASSERT_OK(metrics::StartDaemonMetrics(registry.get(), ""));
  UnaryOnly service;
  Served served(&service);
  auto call = [&] {
    grpc::ClientContext ctx;
    HeartbeatResponse resp;
    return served.stub()->Heartbeat(&ctx, Beat("n1"), &resp);
  };
  ASSERT_TRUE(call().ok());
  EXPECT_NE(
      registry->Render().find(
          R"(shutter_rpc_duration_seconds_count{code="OK",method="Heartbeat",service="ControllerService"} 1)"),
      std::string::npos)
      << registry->Render();
  registry.reset();
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(call().ok());
  SetRpcObserver(nullptr);
}

// A stream is observed by the RPC metrics once, when it ends, with the
// code it ended with (docs/operations.md, shutter_rpc_duration_seconds).
TEST(DaemonMetricsTest, AHeartbeatStreamIsObservedOnceWhenItEnds) {
  auto registry = std::make_unique<metrics::Registry>();
  ASSERT_OK(metrics::StartDaemonMetrics(registry.get(), ""));
  {
    Follower follower;
    HeartbeatStream stream(follower.served.stub());
    std::string leader;
    EXPECT_TRUE(absl::IsUnavailable(BeatOnce(stream, &leader)));
  }
  const std::string text = registry->Render();
  EXPECT_NE(
      text.find(
          R"(shutter_rpc_duration_seconds_count{code="UNAVAILABLE",method="HeartbeatStream",service="ControllerService"} 1)"),
      std::string::npos)
      << text;
  registry.reset();
  SetRpcObserver(nullptr);
}

// Reads beats and never answers them.
class Silent final
    : public ControllerService::WithCallbackMethod_HeartbeatStream<
          ControllerService::Service> {
  class Reactor final
      : public grpc::ServerBidiReactor<HeartbeatRequest, HeartbeatResponse> {
   public:
    Reactor() { StartRead(&req_); }
    void OnReadDone(bool ok) override {
      if (ok) {
        StartRead(&req_);
      } else {
        Finish(grpc::Status::OK);
      }
    }
    void OnDone() override { delete this; }

   private:
    HeartbeatRequest req_;
  };
  grpc::ServerBidiReactor<HeartbeatRequest, HeartbeatResponse>* HeartbeatStream(
      grpc::CallbackServerContext*) override {
    return new Reactor;
  }
};

TEST(HeartbeatStreamTest, ABeatWithoutAnswerCostsOneDeadline) {
  Silent service;
  Served served(&service);
  HeartbeatStream stream(served.stub());
  HeartbeatResponse resp;
  std::string leader;
  const absl::Time start = absl::Now();
  absl::Status s = stream.Exchange(Beat("n1"), start + absl::Milliseconds(300),
                                   &resp, &leader);
  EXPECT_TRUE(absl::IsDeadlineExceeded(s)) << s;
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  // Cancelled: it ends, and the node makes a new one.
  EXPECT_TRUE(
      testing::PollUntil([&] { return stream.done(); }, absl::Seconds(10)));
}

}  // namespace
}  // namespace shutter
