#include "controller/serving_gate.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/rpc.h"

namespace shutter::controller {

void ServingGate::Set(std::shared_ptr<const TermServices> services) {
  absl::MutexLock l(&mu_);
  current_ = std::move(services);
}

std::shared_ptr<const TermServices> ServingGate::Current() const {
  absl::MutexLock l(&mu_);
  return current_;
}

grpc::Status ServingGate::Redirect(grpc::ServerContext* ctx) const {
  const std::string leader = leader_address_ ? leader_address_() : "";
  if (leader.empty()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "this controller does not lead and no leader is "
                        "elected yet; retry shortly");
  }
  if (self_ && leader == self_()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "this controller was just elected leader and is "
                        "loading its state; retry shortly");
  }
  ctx->AddTrailingMetadata(kLeaderMetadataKey, leader);
  return grpc::Status(
      grpc::StatusCode::UNAVAILABLE,
      absl::StrCat("this controller is a follower; the leader is ", leader));
}

grpc::Status AdminGate::ListControllers(
    grpc::ServerContext* ctx, const shutter::v1::ListControllersRequest*,
    shutter::v1::ListControllersResponse* response) {
  if (absl::Status d =
          authz_->CheckAdmin(*ctx, Role::kViewer, "ListControllers");
      !d.ok()) {
    return ToGrpcStatus(d);
  }
  auto r = list_controllers_();
  if (!r.ok()) return ToGrpcStatus(r.status());
  *response = *std::move(r);
  return grpc::Status::OK;
}

grpc::Status ControllerGate::Heartbeat(
    grpc::ServerContext* ctx, const shutter::v1::HeartbeatRequest* request,
    shutter::v1::HeartbeatResponse* response) {
  std::shared_ptr<const TermServices> term = gate_->Current();
  if (term == nullptr) return gate_->Redirect(ctx);
  return term->node_facing->Heartbeat(ctx, request, response);
}

}  // namespace shutter::controller
