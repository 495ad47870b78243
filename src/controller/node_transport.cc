#include "controller/node_transport.h"

#include "common/rpc.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {

struct GrpcNodeTransport::Call {
  grpc::ClientContext ctx;
  shutter::v1::CreateCheckpointRequest request;
  shutter::v1::CreateCheckpointResponse response;
  Callback done;
};

struct GrpcNodeTransport::CancelCall {
  grpc::ClientContext ctx;
  shutter::v1::CancelCheckpointsRequest request;
  shutter::v1::CancelCheckpointsResponse response;
};

GrpcNodeTransport::~GrpcNodeTransport() { Shutdown(); }

void GrpcNodeTransport::CancelCheckpoints(const std::string& address,
                                          const std::string& snapshot_id) {
  auto* call = new CancelCall;
  call->request.set_snapshot_id(snapshot_id);
  call->ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
  shutter::v1::NodeService::Stub* stub = nullptr;
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
  stub->async()->CancelCheckpoints(&call->ctx, &call->request, &call->response,
                                   [this, call, address](grpc::Status s) {
                                     if (!s.ok()) {
                                       spdlog::warn(
                                           "CancelCheckpoints on {} failed: {}",
                                           address, s.error_message());
                                     }
                                     delete call;
                                     absl::MutexLock l(&mu_);
                                     --cancels_in_flight_;
                                   });
}

shutter::v1::NodeService::Stub* GrpcNodeTransport::StubLocked(
    const std::string& address) {
  auto& stub = stubs_[address];
  if (!stub) stub = shutter::v1::NodeService::NewStub(MakeChannel(address));
  return stub.get();
}

void GrpcNodeTransport::CreateCheckpoint(
    const std::string& address,
    const shutter::v1::CreateCheckpointRequest& request, absl::Duration timeout,
    Callback done) {
  auto* call = new Call;
  call->request = request;
  call->done = std::move(done);
  call->ctx.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoMilliseconds(timeout));
  shutter::v1::NodeService::Stub* stub = nullptr;
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
  stub->async()->CreateCheckpoint(
      &call->ctx, &call->request, &call->response,
      [this, call](grpc::Status s) {
        absl::StatusOr<shutter::v1::CreateCheckpointResponse> r =
            s.ok() ? absl::StatusOr<shutter::v1::CreateCheckpointResponse>(
                         std::move(call->response))
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

void GrpcNodeTransport::Shutdown() {
  absl::MutexLock l(&mu_);
  shutdown_ = true;
  for (Call* c : in_flight_) c->ctx.TryCancel();
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return in_flight_.empty() && cancels_in_flight_ == 0;
  };
  mu_.Await(absl::Condition(&idle));
}

}  // namespace shutter::controller
