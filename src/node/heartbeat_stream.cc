#include "node/heartbeat_stream.h"

#include <utility>

#include "common/rpc.h"

namespace shutter::node {

HeartbeatStream::HeartbeatStream(shutter::v1::ControllerService::Stub* stub) {
  stub->async()->HeartbeatStream(&ctx_, this);
  StartRead(&incoming_);
  StartCall();
}

HeartbeatStream::~HeartbeatStream() {
  ctx_.TryCancel();
  absl::MutexLock l(&mu_);
  // gRPC may still call into this object until OnDone.
  mu_.Await(absl::Condition(&done_));
}

bool HeartbeatStream::done() const {
  absl::MutexLock l(&mu_);
  return done_;
}

void HeartbeatStream::OnWriteDone(bool ok) {
  absl::MutexLock l(&mu_);
  writing_ = false;
  // A failed write: the stream is ending; OnDone follows.
  (void)ok;
}

void HeartbeatStream::OnReadDone(bool ok) {
  if (!ok) return;  // the stream ended; OnDone says how
  {
    absl::MutexLock l(&mu_);
    answers_.push_back(std::move(incoming_));
  }
  incoming_.Clear();
  StartRead(&incoming_);
}

void HeartbeatStream::OnDone(const grpc::Status& s) {
  std::string leader;
  const auto& trailers = ctx_.GetServerTrailingMetadata();
  auto it = trailers.find("shutter-leader");
  if (it != trailers.end()) leader.assign(it->second.data(), it->second.size());
  absl::MutexLock l(&mu_);
  status_ = s;
  leader_ = std::move(leader);
  writing_ = false;
  done_ = true;
}

absl::Status HeartbeatStream::EndStatus(std::string* leader) const {
  if (leader != nullptr) *leader = leader_;
  if (status_.error_code() == grpc::StatusCode::CANCELLED || status_.ok()) {
    // Cancelled by a controller shutting down (or ended without a
    // reason): as if it were unreachable.
    return absl::UnavailableError(absl::StrCat(
        "heartbeat stream ended: ",
        status_.ok() ? "closed by the controller" : status_.error_message()));
  }
  return FromGrpcStatus(status_);
}

absl::Status HeartbeatStream::Exchange(
    const shutter::v1::HeartbeatRequest& request, absl::Time deadline,
    shutter::v1::HeartbeatResponse* response, std::string* leader) {
  {
    absl::MutexLock l(&mu_);
    if (done_) return EndStatus(leader);
    // The previous beat's write is done before its answer came, or the
    // stream ended: no write is in flight.
    auto idle = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return !writing_ || done_;
    };
    if (!mu_.AwaitWithDeadline(absl::Condition(&idle), deadline)) {
      ctx_.TryCancel();
      return absl::DeadlineExceededError("heartbeat stream: write stuck");
    }
    if (done_) return EndStatus(leader);
    answers_.clear();  // none expected; a late one belongs to no beat
    request_ = request;
    writing_ = true;
  }
  StartWrite(&request_);
  absl::MutexLock l(&mu_);
  auto answered = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return !answers_.empty() || done_;
  };
  if (!mu_.AwaitWithDeadline(absl::Condition(&answered), deadline)) {
    ctx_.TryCancel();
    return absl::DeadlineExceededError(
        "no answer to the heartbeat on its stream in time");
  }
  if (answers_.empty()) return EndStatus(leader);
  *response = std::move(answers_.front());
  answers_.pop_front();
  return absl::OkStatus();
}

}  // namespace shutter::node
