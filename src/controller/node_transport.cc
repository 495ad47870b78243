#include "controller/node_transport.h"

#include "common/rpc.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {

using shutter::v1::NodeService;

struct GrpcNodeTransport::CallBase : QueueTag {
  explicit CallBase(GrpcNodeTransport* t) : transport(t) {}
  virtual ~CallBase() = default;
  // On the queue's thread: Finish completed (always `ok` for a unary
  // call; `status` says how it ended).
  void Proceed(bool) override { transport->Finished(this); }
  // On a callback thread: runs the call's callback (or logs a cancel's
  // error).
  virtual void Complete() = 0;
  GrpcNodeTransport* const transport;
  grpc::ClientContext ctx;
  grpc::Status status;
  bool cancel = false;  // a fire-and-forget cancel call
};

template <typename Request, typename Response>
struct GrpcNodeTransport::Call : CallBase {
  using CallBase::CallBase;
  void Complete() override {
    if (done) {
      absl::StatusOr<Response> r =
          status.ok() ? absl::StatusOr<Response>(std::move(response))
                      : FromGrpcStatus(status, ctx);
      std::move(done)(std::move(r));
    } else if (!status.ok()) {
      spdlog::warn("{} on {} failed: {}", what, address,
                   status.error_message());
    }
  }
  Request request;
  Response response;
  std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> reader;
  absl::AnyInvocable<void(absl::StatusOr<Response>) &&> done;
  const char* what = "";  // a cancel's method and node, for its log line
  std::string address;
};

GrpcNodeTransport::GrpcNodeTransport(uint64_t term,
                                     std::function<bool()> may_send,
                                     grpc::CompletionQueue* queue)
    : term_(term),
      may_send_(std::move(may_send)),
      own_queue_(queue == nullptr ? std::make_unique<QueueThread>("node-queue")
                                  : nullptr),
      cq_(queue != nullptr ? queue : own_queue_->queue()) {
  for (int i = 0; i < kCallbackThreads; ++i) {
    callback_threads_.emplace_back([this] {
      NameThisThread("node-answers");
      RunCallbacks();
    });
  }
}

GrpcNodeTransport::~GrpcNodeTransport() { Shutdown(); }

NodeService::Stub* GrpcNodeTransport::StubLocked(const std::string& address) {
  auto& stub = stubs_[address];
  if (!stub) stub = NodeService::NewStub(MakeChannel(address));
  return stub.get();
}

void GrpcNodeTransport::Finished(CallBase* call) {
  absl::MutexLock l(&mu_);
  finished_.push_back(call);
}

void GrpcNodeTransport::RunCallbacks() {
  for (;;) {
    CallBase* call;
    {
      absl::MutexLock l(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopped_ || !finished_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (finished_.empty()) return;  // stopped, and nothing left
      call = finished_.front();
      finished_.pop_front();
    }
    call->Complete();
    Ended(call);
  }
}

void GrpcNodeTransport::Ended(CallBase* call) {
  {
    // Erase last: Shutdown() returns once every callback has run.
    absl::MutexLock l(&mu_);
    if (call->cancel) {
      --cancels_in_flight_;
    } else {
      in_flight_.erase(call);
    }
  }
  delete call;
}

template <typename Request, typename Response, typename Prepare>
bool GrpcNodeTransport::Launch(Call<Request, Response>* call,
                               const std::string& address, Prepare prepare) {
  NodeService::Stub* stub;
  {
    absl::MutexLock l(&mu_);
    if (shutdown_) return false;
    stub = StubLocked(address);
    // Counted: Shutdown waits for its callback before the queue shuts.
    if (call->cancel) {
      ++cancels_in_flight_;
    } else {
      in_flight_.insert(call);
    }
  }
  call->reader = prepare(stub, &call->ctx, call->request, cq_);
  call->reader->StartCall();
  call->reader->Finish(&call->response, &call->status,
                       static_cast<QueueTag*>(call));
  return true;
}

template <typename Request, typename Response, typename Prepare>
void GrpcNodeTransport::StartCall(
    const std::string& address, const Request& request, absl::Duration timeout,
    absl::AnyInvocable<void(absl::StatusOr<Response>) &&> done,
    Prepare prepare) {
  auto* call = new Call<Request, Response>(this);
  call->request = request;
  call->request.set_controller_term(term_);
  call->done = std::move(done);
  if (may_send_ && !may_send_()) {
    std::move(call->done)(absl::UnavailableError(
        "this controller no longer leads: nothing is sent to nodes"));
    delete call;
    return;
  }
  call->ctx.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoMilliseconds(timeout));
  if (!Launch(call, address, prepare)) {
    std::move(call->done)(absl::CancelledError("controller is shutting down"));
    delete call;
  }
}

template <typename Request, typename Response, typename Prepare>
void GrpcNodeTransport::StartCancel(const std::string& address,
                                    const Request& request, const char* what,
                                    Prepare prepare) {
  if (may_send_ && !may_send_()) return;
  auto* call = new Call<Request, Response>(this);
  call->cancel = true;
  call->what = what;
  call->address = address;
  call->request = request;
  call->request.set_controller_term(term_);
  call->ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
  if (!Launch(call, address, prepare)) delete call;
}

void GrpcNodeTransport::CreateCheckpoint(
    const std::string& address,
    const shutter::v1::CreateCheckpointRequest& request, absl::Duration timeout,
    Callback done) {
  StartCall<shutter::v1::CreateCheckpointRequest,
            shutter::v1::CreateCheckpointResponse>(
      address, request, timeout, std::move(done),
      [](auto* stub, auto* ctx, const auto& req, auto* cq) {
        return stub->PrepareAsyncCreateCheckpoint(ctx, req, cq);
      });
}

void GrpcNodeTransport::RestorePartition(
    const std::string& address,
    const shutter::v1::RestorePartitionRequest& request, absl::Duration timeout,
    RestoreCallback done) {
  StartCall<shutter::v1::RestorePartitionRequest,
            shutter::v1::RestorePartitionResponse>(
      address, request, timeout, std::move(done),
      [](auto* stub, auto* ctx, const auto& req, auto* cq) {
        return stub->PrepareAsyncRestorePartition(ctx, req, cq);
      });
}

void GrpcNodeTransport::CancelCheckpoints(const std::string& address,
                                          const std::string& snapshot_id) {
  shutter::v1::CancelCheckpointsRequest request;
  request.set_snapshot_id(snapshot_id);
  StartCancel<shutter::v1::CancelCheckpointsRequest,
              shutter::v1::CancelCheckpointsResponse>(
      address, request, "CancelCheckpoints",
      [](auto* stub, auto* ctx, const auto& req, auto* cq) {
        return stub->PrepareAsyncCancelCheckpoints(ctx, req, cq);
      });
}

void GrpcNodeTransport::CancelRestores(const std::string& address,
                                       const std::string& restore_id) {
  shutter::v1::CancelRestoresRequest request;
  request.set_restore_id(restore_id);
  StartCancel<shutter::v1::CancelRestoresRequest,
              shutter::v1::CancelRestoresResponse>(
      address, request, "CancelRestores",
      [](auto* stub, auto* ctx, const auto& req, auto* cq) {
        return stub->PrepareAsyncCancelRestores(ctx, req, cq);
      });
}

void GrpcNodeTransport::VerifyPartition(
    const std::string& address,
    const shutter::v1::VerifyPartitionRequest& request, absl::Duration timeout,
    VerifyCallback done) {
  StartCall<shutter::v1::VerifyPartitionRequest,
            shutter::v1::VerifyPartitionResponse>(
      address, request, timeout, std::move(done),
      [](auto* stub, auto* ctx, const auto& req, auto* cq) {
        return stub->PrepareAsyncVerifyPartition(ctx, req, cq);
      });
}

void GrpcNodeTransport::CancelVerifies(const std::string& address,
                                       const std::string& verify_id) {
  shutter::v1::CancelVerifiesRequest request;
  request.set_verify_id(verify_id);
  StartCancel<shutter::v1::CancelVerifiesRequest,
              shutter::v1::CancelVerifiesResponse>(
      address, request, "CancelVerifies",
      [](auto* stub, auto* ctx, const auto& req, auto* cq) {
        return stub->PrepareAsyncCancelVerifies(ctx, req, cq);
      });
}

void GrpcNodeTransport::Shutdown() {
  {
    absl::MutexLock l(&mu_);
    shutdown_ = true;
    for (CallBase* c : in_flight_) c->ctx.TryCancel();
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return in_flight_.empty() && cancels_in_flight_ == 0;
    };
    mu_.Await(absl::Condition(&idle));
    if (stopped_) return;  // an earlier Shutdown joined the threads
    // Nothing is in flight and nothing can start: the callback threads may
    // end, and the queue (if ours) shut.
    stopped_ = true;
  }
  own_queue_.reset();
  for (std::thread& t : callback_threads_) t.join();
}

}  // namespace shutter::controller
