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

grpc::Status ServingGate::Redirect(grpc::ServerContextBase* ctx) const {
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
  return Beat(ctx, *request, response);
}

grpc::Status ControllerGate::Beat(
    grpc::ServerContextBase* ctx, const shutter::v1::HeartbeatRequest& request,
    shutter::v1::HeartbeatResponse* response) const {
  std::shared_ptr<const TermServices> term = gate_->Current();
  if (term == nullptr) return gate_->Redirect(ctx);
  return term->node_facing->HeartbeatOne(*ctx, request, response);
}

// One HeartbeatStream: read a beat, answer it, read the next. One
// operation is outstanding at a time, so the reactions never run
// concurrently; a failed read or write (the node closed or cancelled, or
// CloseStreams cancelled) finishes it.
class ControllerGate::Stream final
    : public grpc::ServerBidiReactor<shutter::v1::HeartbeatRequest,
                                     shutter::v1::HeartbeatResponse> {
 public:
  Stream(ControllerGate* gate, grpc::CallbackServerContext* ctx)
      : gate_(gate), ctx_(ctx) {}
  void Begin() { StartRead(&request_); }
  void Cancel() { ctx_->TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);  // the node closed its side, or cancelled
      return;
    }
    if (node_id_.empty()) {
      node_id_ = request_.node_id();
    } else if (request_.node_id() != node_id_) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "one heartbeat stream serves one node: it began "
                          "with another node_id"));
      return;
    }
    response_.Clear();
    grpc::Status s = gate_->Beat(ctx_, request_, &response_);
    if (!s.ok()) {
      Finish(s);
      return;
    }
    StartWrite(&response_);
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed"));
      return;
    }
    StartRead(&request_);
  }
  void OnDone() override {
    gate_->Forget(this);
    delete this;
  }

 private:
  ControllerGate* const gate_;
  grpc::CallbackServerContext* const ctx_;
  std::string node_id_;
  shutter::v1::HeartbeatRequest request_;
  shutter::v1::HeartbeatResponse response_;
};

grpc::ServerBidiReactor<shutter::v1::HeartbeatRequest,
                        shutter::v1::HeartbeatResponse>*
ControllerGate::HeartbeatStream(grpc::CallbackServerContext* ctx) {
  auto* s = new Stream(this, ctx);
  bool closing;
  {
    absl::MutexLock l(&mu_);
    closing = closing_;
    if (!closing) streams_.insert(s);
  }
  if (closing) {
    // Not registered: OnDone's Forget finds nothing to erase.
    s->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                           "the controller is shutting down"));
  } else {
    s->Begin();
  }
  return s;
}

void ControllerGate::Forget(Stream* s) {
  absl::MutexLock l(&mu_);
  streams_.erase(s);
}

void ControllerGate::CloseStreams() {
  absl::MutexLock l(&mu_);
  closing_ = true;
  // A stream's OnDone waits for mu_ before it is deleted.
  for (Stream* s : streams_) s->Cancel();
}

int ControllerGate::open_streams() const {
  absl::MutexLock l(&mu_);
  return static_cast<int>(streams_.size());
}

ControllerGate::~ControllerGate() {
  // The server is shut down before the gate is destroyed: none is left.
  CloseStreams();
}

}  // namespace shutter::controller
