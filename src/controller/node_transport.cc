#include "controller/node_transport.h"

#include "common/rpc.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {

using shutter::v1::NodeService;

struct GrpcNodeTransport::CallBase {
  virtual ~CallBase() = default;
  grpc::ClientContext ctx;
};

template <typename Request, typename Response>
struct GrpcNodeTransport::Call : CallBase {
  Request request;
  Response response;
  absl::AnyInvocable<void(absl::StatusOr<Response>) &&> done;
};

GrpcNodeTransport::~GrpcNodeTransport() { Shutdown(); }

NodeService::Stub* GrpcNodeTransport::StubLocked(const std::string& address) {
  auto& stub = stubs_[address];
  if (!stub) stub = NodeService::NewStub(MakeChannel(address));
  return stub.get();
}

template <typename Request, typename Response, typename Start>
void GrpcNodeTransport::StartCall(
    const std::string& address, const Request& request, absl::Duration timeout,
    absl::AnyInvocable<void(absl::StatusOr<Response>) &&> done, Start start) {
  auto* call = new Call<Request, Response>;
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
  NodeService::Stub* stub = nullptr;
  {
    absl::MutexLock l(&mu_);
    if (!shutdown_) {
      stub = StubLocked(address);
      in_flight_.insert(call);
    }
  }
  if (stub == nullptr) {
    std::move(call->done)(absl::CancelledError("controller is shutting down"));
    delete call;
    return;
  }
  start(stub->async(), &call->ctx, &call->request, &call->response,
        [this, call](grpc::Status s) {
          absl::StatusOr<Response> r =
              s.ok() ? absl::StatusOr<Response>(std::move(call->response))
                     : FromGrpcStatus(s, call->ctx);
          std::move(call->done)(std::move(r));
          // Erase last: Shutdown() returns once every callback has run.
          {
            absl::MutexLock l(&mu_);
            in_flight_.erase(call);
          }
          delete call;
        });
}

template <typename Request, typename Response, typename Start>
void GrpcNodeTransport::StartCancel(const std::string& address,
                                    const Request& request, const char* what,
                                    Start start) {
  struct Cancel {
    grpc::ClientContext ctx;
    Request request;
    Response response;
  };
  if (may_send_ && !may_send_()) return;
  auto* call = new Cancel;
  call->request = request;
  call->request.set_controller_term(term_);
  call->ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
  NodeService::Stub* stub = nullptr;
  {
    absl::MutexLock l(&mu_);
    if (!shutdown_) {
      stub = StubLocked(address);
      ++cancels_in_flight_;
    }
  }
  if (stub == nullptr) {
    delete call;
    return;
  }
  start(stub->async(), &call->ctx, &call->request, &call->response,
        [this, call, address, what](grpc::Status s) {
          if (!s.ok()) {
            spdlog::warn("{} on {} failed: {}", what, address,
                         s.error_message());
          }
          delete call;
          absl::MutexLock l(&mu_);
          --cancels_in_flight_;
        });
}

void GrpcNodeTransport::CreateCheckpoint(
    const std::string& address,
    const shutter::v1::CreateCheckpointRequest& request, absl::Duration timeout,
    Callback done) {
  StartCall<shutter::v1::CreateCheckpointRequest,
            shutter::v1::CreateCheckpointResponse>(
      address, request, timeout, std::move(done),
      [](auto* async, auto* ctx, auto* req, auto* resp, auto cb) {
        async->CreateCheckpoint(ctx, req, resp, std::move(cb));
      });
}

void GrpcNodeTransport::RestorePartition(
    const std::string& address,
    const shutter::v1::RestorePartitionRequest& request, absl::Duration timeout,
    RestoreCallback done) {
  StartCall<shutter::v1::RestorePartitionRequest,
            shutter::v1::RestorePartitionResponse>(
      address, request, timeout, std::move(done),
      [](auto* async, auto* ctx, auto* req, auto* resp, auto cb) {
        async->RestorePartition(ctx, req, resp, std::move(cb));
      });
}

void GrpcNodeTransport::CancelCheckpoints(const std::string& address,
                                          const std::string& snapshot_id) {
  shutter::v1::CancelCheckpointsRequest request;
  request.set_snapshot_id(snapshot_id);
  StartCancel<shutter::v1::CancelCheckpointsRequest,
              shutter::v1::CancelCheckpointsResponse>(
      address, request, "CancelCheckpoints",
      [](auto* async, auto* ctx, auto* req, auto* resp, auto cb) {
        async->CancelCheckpoints(ctx, req, resp, std::move(cb));
      });
}

void GrpcNodeTransport::CancelRestores(const std::string& address,
                                       const std::string& restore_id) {
  shutter::v1::CancelRestoresRequest request;
  request.set_restore_id(restore_id);
  StartCancel<shutter::v1::CancelRestoresRequest,
              shutter::v1::CancelRestoresResponse>(
      address, request, "CancelRestores",
      [](auto* async, auto* ctx, auto* req, auto* resp, auto cb) {
        async->CancelRestores(ctx, req, resp, std::move(cb));
      });
}

void GrpcNodeTransport::VerifyPartition(
    const std::string& address,
    const shutter::v1::VerifyPartitionRequest& request, absl::Duration timeout,
    VerifyCallback done) {
  StartCall<shutter::v1::VerifyPartitionRequest,
            shutter::v1::VerifyPartitionResponse>(
      address, request, timeout, std::move(done),
      [](auto* async, auto* ctx, auto* req, auto* resp, auto cb) {
        async->VerifyPartition(ctx, req, resp, std::move(cb));
      });
}

void GrpcNodeTransport::CancelVerifies(const std::string& address,
                                       const std::string& verify_id) {
  shutter::v1::CancelVerifiesRequest request;
  request.set_verify_id(verify_id);
  StartCancel<shutter::v1::CancelVerifiesRequest,
              shutter::v1::CancelVerifiesResponse>(
      address, request, "CancelVerifies",
      [](auto* async, auto* ctx, auto* req, auto* resp, auto cb) {
        async->CancelVerifies(ctx, req, resp, std::move(cb));
      });
}

void GrpcNodeTransport::Shutdown() {
  absl::MutexLock l(&mu_);
  shutdown_ = true;
  for (CallBase* c : in_flight_) c->ctx.TryCancel();
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return in_flight_.empty() && cancels_in_flight_ == 0;
  };
  mu_.Await(absl::Condition(&idle));
}

}  // namespace shutter::controller
