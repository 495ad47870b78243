// GrpcNodeTransport's checkpoints over NodeService.CheckpointStream, over
// real gRPC on loopback against a node whose answers the test gives (the
// reference node's side of the stream, node/checkpoint_stream.h, is the
// one served here): answers matched to requests in any order, errors and
// their reasons carried, a node without streams served by unary calls, a
// deadline that passes, a stream that breaks, and Shutdown. Snapshots of
// real nodes over streams are covered by every integration test.

#include "controller/node_transport.h"

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/error_reason.h"
#include "common/rpc.h"
#include "gtest/gtest.h"
#include "node/checkpoint_stream.h"
#include "testing/etcd_server.h"
#include "testing/status_matchers.h"

namespace shutter {
namespace {

using controller::GrpcNodeTransport;
using v1::CheckpointStreamRequest;
using v1::CheckpointStreamResponse;
using v1::CreateCheckpointRequest;
using v1::CreateCheckpointResponse;

constexpr absl::Duration kWait = absl::Seconds(20);  // bounded waits

// A node that holds every checkpoint it is asked for until the test
// answers it (by partition id), over a stream or, without streams, unary.
class ScriptedNode final : public v1::NodeService::CallbackService {
 public:
  explicit ScriptedNode(bool streams) : streams_(streams) {}

  grpc::ServerUnaryReactor* CreateCheckpoint(
      grpc::CallbackServerContext* ctx, const CreateCheckpointRequest* req,
      CreateCheckpointResponse* resp) override {
    ++unary_calls_;
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    Hold(*req,
         [ctx, reactor, resp](absl::StatusOr<CreateCheckpointResponse> r) {
           if (r.ok()) *resp = *r;
           reactor->Finish(ToGrpcStatus(r.status(), ctx));  // with its reason
         });
    return reactor;
  }

  grpc::ServerBidiReactor<CheckpointStreamRequest, CheckpointStreamResponse>*
  CheckpointStream(grpc::CallbackServerContext*) override {
    {
      absl::MutexLock l(&mu_);
      ++streams_opened_;
    }
    if (!streams_) {
      return node::RefuseCheckpointStream(
          grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no streams here"));
    }
    return node::ServeCheckpointStream(
        [this](const CreateCheckpointRequest& req, node::CheckpointReply a) {
          Hold(req, std::move(a));
        });
  }

  // Waits until `n` checkpoints wait for an answer.
  bool WaitHeld(size_t n) {
    absl::MutexLock l(&mu_);
    auto ready = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return held_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&ready), kWait);
  }

  // Answers partition `p`'s checkpoint with `r` (a manifest naming `p`
  // when OK).
  void Answer(uint32_t p, absl::Status r = absl::OkStatus()) {
    node::CheckpointReply answer;
    {
      absl::MutexLock l(&mu_);
      auto it = held_.find(p);
      ASSERT_NE(it, held_.end()) << "partition " << p << " was not asked";
      answer = std::move(it->second);
      held_.erase(it);
    }
    if (!r.ok()) {
      std::move(answer)(r);
      return;
    }
    CreateCheckpointResponse resp;
    resp.mutable_manifest()->set_partition_id(p);
    std::move(answer)(resp);
  }

  // Waits until `n` streams were opened.
  bool WaitStreams(int n) {
    absl::MutexLock l(&mu_);
    auto ready = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return streams_opened_ >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&ready), kWait);
  }

  int unary_calls() const { return unary_calls_; }
  int streams_opened() {
    absl::MutexLock l(&mu_);
    return streams_opened_;
  }

 private:
  void Hold(const CreateCheckpointRequest& req, node::CheckpointReply a) {
    absl::MutexLock l(&mu_);
    held_[req.partition_id()] = std::move(a);
  }

  const bool streams_;
  std::atomic<int> unary_calls_{0};
  absl::Mutex mu_;
  int streams_opened_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint32_t, node::CheckpointReply> held_ ABSL_GUARDED_BY(mu_);
};

// The results the transport's callbacks delivered, by partition.
class Results {
 public:
  GrpcNodeTransport::Callback For(uint32_t p) {
    return [this, p](absl::StatusOr<CreateCheckpointResponse> r) {
      absl::MutexLock l(&mu_);
      ++calls_[p];
      results_.insert_or_assign(p, std::move(r));
    };
  }
  // Waits until `n` partitions have their result.
  bool Wait(size_t n) {
    absl::MutexLock l(&mu_);
    auto ready = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return results_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&ready), kWait);
  }
  absl::StatusOr<CreateCheckpointResponse> Get(uint32_t p) {
    absl::MutexLock l(&mu_);
    auto it = results_.find(p);
    if (it == results_.end()) return absl::NotFoundError("no result yet");
    return it->second;
  }
  int Calls(uint32_t p) {
    absl::MutexLock l(&mu_);
    return calls_[p];
  }

 private:
  absl::Mutex mu_;
  std::map<uint32_t, absl::StatusOr<CreateCheckpointResponse>> results_
      ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, int> calls_ ABSL_GUARDED_BY(mu_);
};

CreateCheckpointRequest Ask(uint32_t p) {
  CreateCheckpointRequest r;
  r.set_snapshot_id("s1");
  r.set_partition_id(p);
  return r;
}

// Asks partition `p` of `node` at `address`, has the node answer it, and
// checks that the answer came back (results then hold `n` partitions).
void AskAndAnswer(GrpcNodeTransport& transport, ScriptedNode& node,
                  const std::string& address, uint32_t p, Results& results,
                  size_t n) {
  transport.CreateCheckpoint(address, Ask(p), kWait, results.For(p));
  ASSERT_TRUE(node.WaitHeld(1));
  node.Answer(p);
  ASSERT_TRUE(results.Wait(n));
  ASSERT_OK(results.Get(p));
  EXPECT_EQ(results.Get(p)->manifest().partition_id(), p);
}

struct ServedNode {
  explicit ServedNode(ScriptedNode* node, int port = 0) {
    auto s = StartGrpcServer(absl::StrCat("127.0.0.1:", port), {node});
    EXPECT_OK(s);
    server = std::move(s).value();
    address = absl::StrCat("127.0.0.1:", server.port);
  }
  ~ServedNode() { Stop(); }
  void Stop() {
    if (server.server) StopGrpcServer(server, absl::ZeroDuration());
    server.server.reset();
  }
  RunningServer server;
  std::string address;
};

TEST(NodeTransportTest, AnswersComeBackToTheirRequestsInAnyOrderOverOneStream) {
  ScriptedNode node(/*streams=*/true);
  ServedNode served(&node);
  GrpcNodeTransport transport;
  Results results;
  for (uint32_t p : {1, 2, 3}) {
    transport.CreateCheckpoint(served.address, Ask(p), kWait, results.For(p));
  }
  ASSERT_TRUE(node.WaitHeld(3));
  node.Answer(3, WithReason(absl::FailedPreconditionError("epoch 7, not 6"),
                            ErrorReason::kStaleEpoch));
  node.Answer(1);
  node.Answer(2);
  ASSERT_TRUE(results.Wait(3));

  for (uint32_t p : {1, 2}) {
    ASSERT_OK(results.Get(p));
    EXPECT_EQ(results.Get(p)->manifest().partition_id(), p);
  }
  absl::Status refused = results.Get(3).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(refused.message(), "epoch 7, not 6");
  EXPECT_EQ(GetErrorReason(refused), ErrorReason::kStaleEpoch);
  EXPECT_EQ(node.streams_opened(), 1);
  EXPECT_EQ(node.unary_calls(), 0);

  // The stream stays open for the next checkpoints.
  transport.CreateCheckpoint(served.address, Ask(4), kWait, results.For(4));
  ASSERT_TRUE(node.WaitHeld(1));
  node.Answer(4);
  ASSERT_TRUE(results.Wait(4));
  EXPECT_OK(results.Get(4));
  EXPECT_EQ(node.streams_opened(), 1);
  transport.Shutdown();
  for (uint32_t p : {1, 2, 3, 4}) EXPECT_EQ(results.Calls(p), 1);
}

TEST(NodeTransportTest, ANodeWithoutStreamsIsAskedByUnaryCalls) {
  ScriptedNode node(/*streams=*/false);
  ServedNode served(&node);
  GrpcNodeTransport transport;
  Results results;
  // Both go on the stream, are refused with it, and are asked again.
  transport.CreateCheckpoint(served.address, Ask(1), kWait, results.For(1));
  transport.CreateCheckpoint(served.address, Ask(2), kWait, results.For(2));
  ASSERT_TRUE(node.WaitHeld(2));
  EXPECT_EQ(node.unary_calls(), 2);
  node.Answer(1);
  node.Answer(2, WithReason(absl::NotFoundError("not hosted"),
                            ErrorReason::kNotHosted));
  ASSERT_TRUE(results.Wait(2));
  ASSERT_OK(results.Get(1));
  EXPECT_EQ(results.Get(1)->manifest().partition_id(), 1u);
  EXPECT_EQ(GetErrorReason(results.Get(2).status()), ErrorReason::kNotHosted);

  // From then on, straight to unary calls.
  transport.CreateCheckpoint(served.address, Ask(3), kWait, results.For(3));
  ASSERT_TRUE(node.WaitHeld(1));
  node.Answer(3);
  ASSERT_TRUE(results.Wait(3));
  EXPECT_OK(results.Get(3));
  EXPECT_EQ(node.unary_calls(), 3);
  EXPECT_EQ(node.streams_opened(), 1);
}

TEST(NodeTransportTest, ConnectOpensTheStreamBeforeTheFirstCheckpoint) {
  // What the controller does when a node registers: the first job's
  // requests then go out on a stream that is already open.
  ScriptedNode node(/*streams=*/true);
  ServedNode served(&node);
  GrpcNodeTransport transport;
  Results results;
  transport.Connect(served.address);
  ASSERT_TRUE(node.WaitStreams(1));
  transport.Connect(served.address);  // one stream per node, still
  ASSERT_NO_FATAL_FAILURE(
      AskAndAnswer(transport, node, served.address, 1, results, 1));
  EXPECT_EQ(node.streams_opened(), 1);
  EXPECT_EQ(node.unary_calls(), 0);
  transport.Shutdown();  // ends the idle stream too
}

TEST(NodeTransportTest,
     AnUnreachableNodesChannelIsDroppedAndMadeAgainWhenAsked) {
  // A node registered at an address nothing listens on (it crashed, or it
  // advertises an address the controller cannot reach): once its stream
  // fails, the transport lets the channel go, or gRPC would dial it every
  // second for as long as the controller runs.
  auto port = testing::PickFreePort();
  ASSERT_OK(port);
  const std::string address = absl::StrCat("127.0.0.1:", *port);
  GrpcNodeTransport transport;
  transport.Connect(address);
  const absl::Time deadline = absl::Now() + kWait;
  while (transport.HasChannel(address) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));  // bounded poll of gRPC's work
  }
  EXPECT_FALSE(transport.HasChannel(address));
  // The node comes up there: the next checkpoint makes a new channel.
  ScriptedNode node(/*streams=*/true);
  ServedNode served(&node, *port);
  ASSERT_EQ(served.address, address);
  Results results;
  ASSERT_NO_FATAL_FAILURE(
      AskAndAnswer(transport, node, address, 1, results, 1));
  EXPECT_TRUE(transport.HasChannel(address));
  transport.Shutdown();
}

TEST(NodeTransportTest, ConnectToANodeWithoutStreamsLeavesItUnaryCalls) {
  ScriptedNode node(/*streams=*/false);
  ServedNode served(&node);
  GrpcNodeTransport transport;
  Results results;
  transport.Connect(served.address);
  ASSERT_TRUE(node.WaitStreams(1));  // refused
  // Whether or not the refusal was seen yet, the checkpoint is asked
  // by a unary call, and no other stream is tried.
  ASSERT_NO_FATAL_FAILURE(
      AskAndAnswer(transport, node, served.address, 1, results, 1));
  EXPECT_EQ(node.unary_calls(), 1);
  transport.Connect(served.address);
  ASSERT_NO_FATAL_FAILURE(
      AskAndAnswer(transport, node, served.address, 2, results, 2));
  EXPECT_EQ(node.unary_calls(), 2);
  EXPECT_EQ(node.streams_opened(), 1);
  transport.Shutdown();
}

TEST(NodeTransportTest, ACheckpointAskedAsTheRefusedStreamEndsOpensNoOther) {
  // The refusal of a node without streams ends the transport's stream in
  // two steps (the stream breaks, then its final status comes): an ask
  // that lands in between waits for the status, and goes unary, rather
  // than opening a second stream. The asks land at a spread of moments
  // after the node refused, each on a new transport (a new controller).
  ScriptedNode node(/*streams=*/false);
  ServedNode served(&node);
  Results results;
  constexpr int kTries = 40;
  for (int i = 0; i < kTries; ++i) {
    GrpcNodeTransport transport;
    transport.Connect(served.address);
    ASSERT_TRUE(node.WaitStreams(i + 1));  // refused
    // Not a wait for anything: where in the window the ask lands.
    absl::SleepFor(absl::Microseconds(20 * (i % 20)));
    const uint32_t p = i + 1;
    transport.CreateCheckpoint(served.address, Ask(p), kWait, results.For(p));
    ASSERT_TRUE(node.WaitHeld(1));
    node.Answer(p);
    ASSERT_TRUE(results.Wait(p));
    ASSERT_OK(results.Get(p));
    ASSERT_EQ(node.streams_opened(), i + 1) << "try " << i;
    transport.Shutdown();
  }
  EXPECT_EQ(node.unary_calls(), kTries);
}

TEST(NodeTransportTest,
     AStreamedRequestPastItsDeadlineFailsAndItsLateAnswerIsDropped) {
  ScriptedNode node(/*streams=*/true);
  ServedNode served(&node);
  GrpcNodeTransport transport;
  Results results;
  const absl::Time start = absl::Now();
  transport.CreateCheckpoint(served.address, Ask(1), absl::Milliseconds(300),
                             results.For(1));
  transport.CreateCheckpoint(served.address, Ask(2), kWait, results.For(2));
  ASSERT_TRUE(node.WaitHeld(2));
  ASSERT_TRUE(results.Wait(1));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));
  EXPECT_EQ(results.Get(1).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(results.Get(2).status().code(), absl::StatusCode::kNotFound)
      << "partition 2 is not answered yet";

  // The late answer goes nowhere; the stream serves the other request.
  node.Answer(1);
  node.Answer(2);
  ASSERT_TRUE(results.Wait(2));
  EXPECT_OK(results.Get(2));
  transport.Shutdown();
  EXPECT_EQ(results.Calls(1), 1);
  EXPECT_EQ(results.Get(1).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(node.streams_opened(), 1);
}

TEST(NodeTransportTest, AStreamThatBreaksFailsItsRequestsAsNeverAnswered) {
  ScriptedNode node(/*streams=*/true);
  auto served = std::make_unique<ServedNode>(&node);
  GrpcNodeTransport transport;
  Results results;
  transport.CreateCheckpoint(served->address, Ask(1), kWait, results.For(1));
  ASSERT_TRUE(node.WaitHeld(1));
  served->Stop();  // the node goes away with the checkpoint unanswered
  ASSERT_TRUE(results.Wait(1));
  absl::Status s = results.Get(1).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  // No reason: the controller retries it as a call never answered.
  EXPECT_EQ(GetErrorReason(s), ErrorReason::kUnspecified);

  // The next checkpoint for the address opens a new stream (here to a node
  // that is gone: it fails the same way, at once).
  transport.CreateCheckpoint(served->address, Ask(2), kWait, results.For(2));
  ASSERT_TRUE(results.Wait(2));
  EXPECT_EQ(results.Get(2).status().code(), absl::StatusCode::kUnavailable);
  node.Answer(1);  // dropped: its stream is gone
}

TEST(NodeTransportTest, ShutdownEndsStreamedRequestsWithCancelled) {
  ScriptedNode node(/*streams=*/true);
  ServedNode served(&node);
  Results results;
  {
    GrpcNodeTransport transport;
    transport.CreateCheckpoint(served.address, Ask(1), kWait, results.For(1));
    transport.CreateCheckpoint(served.address, Ask(2), kWait, results.For(2));
    ASSERT_TRUE(node.WaitHeld(2));
    transport.Shutdown();
    // Every callback has run when Shutdown returns.
    EXPECT_EQ(results.Get(1).status().code(), absl::StatusCode::kCancelled);
    EXPECT_EQ(results.Get(2).status().code(), absl::StatusCode::kCancelled);
    // And later calls fail at once.
    transport.CreateCheckpoint(served.address, Ask(3), kWait, results.For(3));
    EXPECT_EQ(results.Get(3).status().code(), absl::StatusCode::kCancelled);
  }
  node.Answer(1);
  node.Answer(2);
  for (uint32_t p : {1, 2, 3}) EXPECT_EQ(results.Calls(p), 1);
}

// The node's side from a plain client: several requests in one message,
// answers (batched or not) each once by call id, and the stream ends OK
// once the client closed its side and everything is answered.
TEST(NodeTransportTest, TheNodeSideAnswersEveryCallOfAMessageAndEndsCleanly) {
  // The RPC metrics observe the stream once, when it ends, not its
  // checkpoints one by one (docs/operations.md).
  absl::Mutex observed_mu;
  std::vector<std::pair<std::string, grpc::StatusCode>> observed;
  SetRpcObserver([&](const std::string& method, grpc::StatusCode code, double) {
    absl::MutexLock l(&observed_mu);
    observed.emplace_back(method, code);
  });
  ScriptedNode node(/*streams=*/true);
  ServedNode served(&node);
  auto stub = v1::NodeService::NewStub(MakeChannel(served.address));
  grpc::ClientContext ctx;
  auto stream = stub->CheckpointStream(&ctx);
  CheckpointStreamRequest message;
  for (uint32_t p : {7, 8, 9}) {
    v1::CheckpointCall* call = message.add_calls();
    call->set_call_id(100 + p);
    *call->mutable_checkpoint() = Ask(p);
  }
  ASSERT_TRUE(stream->Write(message));
  ASSERT_TRUE(node.WaitHeld(3));
  ASSERT_TRUE(stream->WritesDone());
  node.Answer(9);
  node.Answer(7, WithReason(absl::UnavailableError("draining"),
                            ErrorReason::kNodeUnavailable));
  node.Answer(8);
  std::map<uint64_t, v1::CheckpointAnswer> answers;
  int messages = 0;
  CheckpointStreamResponse response;
  while (stream->Read(&response)) {
    ++messages;
    for (const v1::CheckpointAnswer& a : response.answers()) {
      EXPECT_TRUE(answers.emplace(a.call_id(), a).second) << a.call_id();
    }
  }
  EXPECT_OK(FromGrpcStatus(stream->Finish()));
  ASSERT_EQ(answers.size(), 3u);
  EXPECT_LE(messages, 3);
  EXPECT_EQ(answers[109].code(), 0);
  EXPECT_EQ(answers[109].checkpoint().manifest().partition_id(), 9u);
  EXPECT_EQ(answers[108].checkpoint().manifest().partition_id(), 8u);
  EXPECT_EQ(answers[107].code(), static_cast<int>(grpc::UNAVAILABLE));
  EXPECT_EQ(answers[107].message(), "draining");
  EXPECT_EQ(answers[107].error_reason(), "NODE_UNAVAILABLE");
  SetRpcObserver(nullptr);
  absl::MutexLock l(&observed_mu);
  ASSERT_EQ(observed.size(), 1u);
  EXPECT_EQ(observed[0].first, "/shutter.v1.NodeService/CheckpointStream");
  EXPECT_EQ(observed[0].second, grpc::StatusCode::OK);
}

}  // namespace
}  // namespace shutter
