#include "node/heartbeat_stream.h"

#include <utility>

#include "common/rpc.h"

namespace shutter::node {

HeartbeatStream::HeartbeatStream(shutter::v1::ControllerService::Stub* stub) {
  stub->async()->HeartbeatStream(&ctx_, this);
  // Held while a write may still be started: without it gRPC may end the
  // call (OnDone) as soon as the controller goes away, and a StartWrite
  // after that touches a finished call (a use-after-free once this object
  // is destroyed). Released once the stream has ended and no write is in
  // flight (ReleaseHoldLocked).
  AddHold();
  StartCall();
}

HeartbeatStream::~HeartbeatStream() {
  ctx_.TryCancel();
  bool release;
  {
    absl::MutexLock l(&mu_);
    ended_ = true;  // no write starts from now on
    release = ReleaseHoldLocked();
  }
  if (release) RemoveHold();
  absl::MutexLock l(&mu_);
  // gRPC may still call into this object until OnDone.
  mu_.Await(absl::Condition(&done_));
}

bool HeartbeatStream::ReleaseHoldLocked() {
  if (!ended_ || writing_ || hold_released_) return false;
  hold_released_ = true;
  return true;
}

bool HeartbeatStream::done() const {
  absl::MutexLock l(&mu_);
  return ended_ || done_;
}

void HeartbeatStream::OnWriteDone(bool ok) {
  // A failed write: the stream is ending; the failed read says so.
  (void)ok;
  bool release;
  {
    absl::MutexLock l(&mu_);
    writing_ = false;
    release = ReleaseHoldLocked();
  }
  if (release) RemoveHold();
}

void HeartbeatStream::OnReadDone(bool ok) {
  if (!ok) {
    // The stream ended; OnDone (after the hold is released) says how.
    bool release;
    {
      absl::MutexLock l(&mu_);
      reading_ = false;
      ended_ = true;
      release = ReleaseHoldLocked();
    }
    if (release) RemoveHold();
    return;
  }
  absl::MutexLock l(&mu_);
  reading_ = false;
  answers_.push_back(std::move(incoming_));
  incoming_.Clear();
}

void HeartbeatStream::OnDone(const grpc::Status& s) {
  std::string leader;
  const auto& trailers = ctx_.GetServerTrailingMetadata();
  auto it = trailers.find("shutter-leader");
  if (it != trailers.end()) leader.assign(it->second.data(), it->second.size());
  absl::MutexLock l(&mu_);
  status_ = s;
  leader_ = std::move(leader);
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
  bool start_read = false;
  {
    absl::MutexLock l(&mu_);
    // The previous beat's write is done (its answer came), or the stream
    // ended (then wait for its status).
    auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return done_ || (!writing_ && !ended_);
    };
    if (!mu_.AwaitWithDeadline(absl::Condition(&ready), deadline)) {
      ctx_.TryCancel();
      return absl::DeadlineExceededError("heartbeat stream: write stuck");
    }
    if (done_) return EndStatus(leader);
    answers_.clear();  // none expected; a late one belongs to no beat
    request_ = request;
    // With writing_ set the hold stays: the write below starts on a call
    // gRPC has not ended, whatever the controller does meanwhile.
    writing_ = true;
    start_read = !reading_;
    reading_ = true;
  }
  // The read first: the window update it sends at once then reaches the
  // controller together with the beat rather than alone (see the header).
  if (start_read) StartRead(&incoming_);
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
