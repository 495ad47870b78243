#include "node/checkpoint_stream.h"

#include <deque>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "common/error_reason.h"

namespace shutter::node {

using shutter::v1::CheckpointAnswer;
using shutter::v1::CheckpointCall;
using shutter::v1::CheckpointStreamRequest;
using shutter::v1::CheckpointStreamResponse;
using shutter::v1::CreateCheckpointResponse;

namespace {

using Reactor =
    grpc::ServerBidiReactor<CheckpointStreamRequest, CheckpointStreamResponse>;

// Bounds of one message of answers (a manifest can list many files).
constexpr int kMaxAnswersPerMessage = 256;
constexpr size_t kMaxBytesPerMessage = 1 << 20;

class StreamReactor final : public Reactor {
 public:
  StreamReactor(CheckpointHandler handle, std::shared_ptr<CallTracker> calls)
      : handle_(std::move(handle)),
        calls_(std::move(calls)),
        shared_(std::make_shared<Shared>()) {
    shared_->reactor = this;
    StartRead(&incoming_);
  }

  void OnReadDone(bool ok) override {
    google::protobuf::RepeatedPtrField<CheckpointCall> calls;
    {
      absl::MutexLock l(&shared_->mu);
      // !ok: the caller closed its side, or the stream broke. Finished
      // (the caller went away): nothing more is read, and what this
      // message asked could not be answered anyway.
      if (!ok || finished_) {
        reads_done_ = true;
        MaybeFinishLocked();
        return;
      }
      unanswered_ += incoming_.calls_size();
      calls.Swap(incoming_.mutable_calls());
      incoming_.Clear();
      StartRead(&incoming_);
    }
    for (const CheckpointCall& call : calls) {
      if (calls_) calls_->Begin();
      handle_(
          call.checkpoint(),
          [shared = shared_, calls = calls_,
           id = call.call_id()](absl::StatusOr<CreateCheckpointResponse> r) {
            CheckpointAnswer answer;
            answer.set_call_id(id);
            if (r.ok()) {
              *answer.mutable_checkpoint() = std::move(r).value();
            } else {
              answer.set_code(static_cast<int>(r.status().code()));
              answer.set_message(std::string(r.status().message()));
              if (ErrorReason reason = GetErrorReason(r.status());
                  reason != ErrorReason::kUnspecified) {
                answer.set_error_reason(std::string(ErrorReasonName(reason)));
              }
            }
            {
              absl::MutexLock l(&shared->mu);
              if (shared->reactor != nullptr) {
                shared->reactor->AnswerLocked(std::move(answer));
              }
            }
            if (calls) calls->End();
          });
    }
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&shared_->mu);
    writing_ = false;
    if (finished_) return;
    if (!ok) {  // the stream broke: nothing more can be written
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"));
      return;
    }
    outgoing_.pop_front();
    MaybeWriteLocked();
    MaybeFinishLocked();
  }

  void OnCancel() override {
    absl::MutexLock l(&shared_->mu);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "caller went away"));
  }

  void OnDone() override {
    {
      // Answers still to come are dropped from now on.
      absl::MutexLock l(&shared_->mu);
      shared_->reactor = nullptr;
    }
    delete this;
  }

 private:
  // What outlives the reactor: the answers' way to it, and its lock.
  struct Shared {
    absl::Mutex mu;
    StreamReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
  };

  // Queues `answer`: into the message after the one being written (so
  // what comes while a write is in flight goes out together), up to a
  // bound per message.
  void AnswerLocked(CheckpointAnswer answer) {
    if (finished_) return;
    --unanswered_;
    const size_t bytes = answer.ByteSizeLong();
    const bool open = !outgoing_.empty() &&
                      !(writing_ && outgoing_.size() == 1) &&
                      outgoing_.back().answers_size() < kMaxAnswersPerMessage &&
                      back_bytes_ + bytes <= kMaxBytesPerMessage;
    if (!open) {
      outgoing_.emplace_back();
      back_bytes_ = 0;
    }
    *outgoing_.back().add_answers() = std::move(answer);
    back_bytes_ += bytes;
    MaybeWriteLocked();
  }

  void MaybeWriteLocked() {
    if (writing_ || finished_ || outgoing_.empty()) return;
    writing_ = true;
    StartWrite(&outgoing_.front());
  }

  void MaybeFinishLocked() {
    if (reads_done_ && unanswered_ == 0 && outgoing_.empty() && !writing_) {
      FinishLocked(grpc::Status::OK);
    }
  }

  void FinishLocked(const grpc::Status& status) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  const CheckpointHandler handle_;
  const std::shared_ptr<CallTracker> calls_;
  const std::shared_ptr<Shared> shared_;
  // Guarded by shared_->mu (not annotated: the lock lives in `shared_`).
  CheckpointStreamRequest incoming_;
  std::deque<CheckpointStreamResponse> outgoing_;  // front: being written
  size_t back_bytes_ = 0;  // of the answers in outgoing_.back()
  bool writing_ = false;
  bool reads_done_ = false;
  bool finished_ = false;
  int unanswered_ = 0;
};

class Refused final : public Reactor {
 public:
  explicit Refused(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

Reactor* ServeCheckpointStream(CheckpointHandler handle,
                               std::shared_ptr<CallTracker> calls) {
  return new StreamReactor(std::move(handle), std::move(calls));
}

Reactor* RefuseCheckpointStream(const grpc::Status& status) {
  return new Refused(status);
}

}  // namespace shutter::node
