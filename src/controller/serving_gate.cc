#include "controller/serving_gate.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/rpc.h"
#include "common/thread_name.h"

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

// One HeartbeatStream: read a beat, answer it, read the next. Exactly
// one operation is outstanding on the queue at a time (tagged with the
// stream), so Proceed never runs concurrently for one stream; a failed
// read or write (the node closed or cancelled, CloseStreams cancelled, or
// the server shut down) finishes it.
class ControllerGate::Stream final : public QueueTag {
 public:
  explicit Stream(ControllerGate* gate) : gate_(gate), rw_(&ctx_) {}
  grpc::ServerContext* ctx() { return &ctx_; }
  grpc::ServerAsyncReaderWriter<shutter::v1::HeartbeatResponse,
                                shutter::v1::HeartbeatRequest>*
  rw() {
    return &rw_;
  }
  void Cancel() { ctx_.TryCancel(); }

  // The outstanding operation completed (`ok`: it succeeded). Deletes the
  // stream after its Finish.
  void Proceed(bool ok) override {
    switch (state_) {
      case State::kRequested:
        if (!ok) {  // the server shut down before a node opened it
          gate_->Accepted(this, false);
          delete this;
        } else if (gate_->Accepted(this, true)) {
          Read();
        } else {
          Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              "the controller is shutting down"));
        }
        return;
      case State::kReading:
        if (!ok) {
          // The node closed its side, or the call was cancelled.
          Finish(grpc::Status::OK);
        } else {
          OnBeat();
        }
        return;
      case State::kWriting:
        if (!ok) {
          Finish(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed"));
        } else {
          Read();
        }
        return;
      case State::kFinishing:
        gate_->Forget(this);
        delete this;
        return;
    }
  }

 private:
  enum class State { kRequested, kReading, kWriting, kFinishing };

  void Read() {
    state_ = State::kReading;
    rw_.Read(&request_, static_cast<QueueTag*>(this));
  }
  void Finish(const grpc::Status& s) {
    state_ = State::kFinishing;
    rw_.Finish(s, static_cast<QueueTag*>(this));
  }
  void OnBeat() {
    if (node_id_.empty()) {
      node_id_ = request_.node_id();
    } else if (request_.node_id() != node_id_) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "one heartbeat stream serves one node: it began "
                          "with another node_id"));
      return;
    }
    response_.Clear();
    grpc::Status s = gate_->Beat(&ctx_, request_, &response_);
    if (!s.ok()) {
      Finish(s);
      return;
    }
    state_ = State::kWriting;
    rw_.Write(response_, static_cast<QueueTag*>(this));
  }

  ControllerGate* const gate_;
  grpc::ServerContext ctx_;
  grpc::ServerAsyncReaderWriter<shutter::v1::HeartbeatResponse,
                                shutter::v1::HeartbeatRequest>
      rw_;
  State state_ = State::kRequested;
  std::string node_id_;
  shutter::v1::HeartbeatRequest request_;
  shutter::v1::HeartbeatResponse response_;
};

void ControllerGate::AddQueue(grpc::ServerBuilder& builder) {
  cq_ = builder.AddCompletionQueue();
}

void ControllerGate::Start() {
  {
    absl::MutexLock l(&mu_);
    RequestStream();
  }
  thread_ = std::thread([this] {
    NameThisThread("queue");
    ServeQueueTags(cq_.get());
  });
}

void ControllerGate::RequestStream() {
  if (stopped_ || cq_ == nullptr) return;
  auto* s = new Stream(this);
  requested_ = true;
  RequestHeartbeatStream(s->ctx(), s->rw(), cq_.get(), cq_.get(),
                         static_cast<QueueTag*>(s));
}

bool ControllerGate::Accepted(Stream* s, bool ok) {
  absl::MutexLock l(&mu_);
  requested_ = false;
  if (!ok) return false;  // the server shut down: no more streams
  RequestStream();        // the next node's
  // Registered even when refused, so Stop waits for its Finish.
  streams_.insert(s);
  return !closing_;
}

void ControllerGate::Forget(Stream* s) {
  absl::MutexLock l(&mu_);
  streams_.erase(s);
}

void ControllerGate::CloseStreams() {
  absl::MutexLock l(&mu_);
  closing_ = true;
  // A stream is deleted only after Forget, which waits for mu_.
  for (Stream* s : streams_) s->Cancel();
}

void ControllerGate::Stop() {
  {
    absl::MutexLock l(&mu_);
    if (stopped_) return;
    // The server's shutdown cancelled every call and failed the pending
    // request: their completions come through the queue's thread. No
    // operation may start on the queue after its Shutdown, so wait for
    // them.
    auto ended = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !requested_ && streams_.empty();
    };
    if (thread_.joinable()) mu_.Await(absl::Condition(&ended));
    stopped_ = true;
    if (cq_ != nullptr) cq_->Shutdown();
  }
  if (thread_.joinable()) {
    thread_.join();
  } else if (cq_ != nullptr) {
    ServeQueueTags(cq_.get());  // never started: nothing is on it
  }
}

int ControllerGate::open_streams() const {
  absl::MutexLock l(&mu_);
  return static_cast<int>(streams_.size());
}

ControllerGate::~ControllerGate() { Stop(); }

}  // namespace shutter::controller
