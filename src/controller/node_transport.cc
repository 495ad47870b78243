#include "controller/node_transport.h"

#include "common/rpc.h"

namespace shutter::controller {

struct GrpcNodeTransport::Call {
  grpc::ClientContext ctx;
  shutter::v1::CreateCheckpointRequest request;
  shutter::v1::CreateCheckpointResponse response;
  Callback done;
};

GrpcNodeTransport::~GrpcNodeTransport() { Shutdown(); }

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
                   : FromGrpcStatus(s);
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
  mu_.Await(absl::Condition(
      +[](std::set<Call*>* s) { return s->empty(); }, &in_flight_));
}

}  // namespace shutter::controller
