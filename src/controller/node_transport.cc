#include "controller/node_transport.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/error_reason.h"
#include "common/rpc.h"
#include "common/thread_name.h"
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
  // Shutdown: ends the call soon (with CANCELLED).
  virtual void Cancel() = 0;
  GrpcNodeTransport* const transport;
  bool cancel = false;  // a fire-and-forget cancel call
};

template <typename Request, typename Response>
struct GrpcNodeTransport::Call : CallBase {
  using CallBase::CallBase;
  void Cancel() override { ctx.TryCancel(); }
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
  grpc::ClientContext ctx;
  grpc::Status status;
  Request request;
  Response response;
  std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> reader;
  absl::AnyInvocable<void(absl::StatusOr<Response>) &&> done;
  const char* what = "";  // a cancel's method and node, for its log line
  std::string address;
};

// Requests per message on a checkpoint stream (each is ~100 bytes).
constexpr int kMaxCallsPerMessage = 256;

// A checkpoint asked over a stream: its result comes from the stream's
// reads, its deadline from KeepDeadlines.
struct GrpcNodeTransport::StreamItem : CallBase {
  using CallBase::CallBase;
  void Cancel() override {}  // its stream is cancelled
  void Complete() override { std::move(done)(std::move(result)); }
  uint64_t call_id = 0;
  absl::Time deadline;
  CheckpointStream* stream = nullptr;            // until answered
  shutter::v1::CreateCheckpointRequest request;  // to resend it unary
  Callback done;
  absl::StatusOr<shutter::v1::CreateCheckpointResponse> result;
};

struct GrpcNodeTransport::CheckpointStream {
  // One kind of completion of the stream, run on the queue's thread.
  class Op final : public QueueTag {
   public:
    Op(CheckpointStream* s,
       void (GrpcNodeTransport::*on)(CheckpointStream*, bool))
        : stream_(s), on_(on) {}
    void Proceed(bool ok) override { (stream_->transport->*on_)(stream_, ok); }

   private:
    CheckpointStream* const stream_;
    void (GrpcNodeTransport::*const on_)(CheckpointStream*, bool);
  };
  CheckpointStream(GrpcNodeTransport* t, std::string a)
      : transport(t), address(std::move(a)) {}

  GrpcNodeTransport* const transport;
  const std::string address;
  grpc::ClientContext ctx;
  std::unique_ptr<
      grpc::ClientAsyncReaderWriter<shutter::v1::CheckpointStreamRequest,
                                    shutter::v1::CheckpointStreamResponse>>
      rw;
  // Guarded by the transport's mu_.
  std::map<uint64_t, StreamItem*> pending;  // asked, not answered
  // Asked after a stream that never answered broke, before its final
  // status says whether the node serves streams at all: sent on once it
  // does (unary if the node has no streams, else on a new stream).
  std::vector<StreamItem*> held;
  // Front: being written (when `writing`); the back takes new requests.
  std::deque<shutter::v1::CheckpointStreamRequest> outgoing;
  shutter::v1::CheckpointStreamResponse incoming;
  grpc::Status status;
  bool started = false;
  bool writing = false;
  bool reading = false;
  bool broken = false;     // no more reads or writes
  bool finishing = false;  // Finish asked
  bool answered = false;   // at least one answer came
  Op started_tag{this, &GrpcNodeTransport::OnStreamStarted};
  Op write_tag{this, &GrpcNodeTransport::OnStreamWritten};
  Op read_tag{this, &GrpcNodeTransport::OnStreamRead};
  Op finish_tag{this, &GrpcNodeTransport::OnStreamFinished};
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
  deadline_thread_ = std::thread([this] {
    NameThisThread("node-deadlines");
    KeepDeadlines();
  });
}

GrpcNodeTransport::~GrpcNodeTransport() { Shutdown(); }

std::shared_ptr<NodeService::Stub> GrpcNodeTransport::StubLocked(
    const std::string& address) {
  auto& stub = stubs_[address];
  if (!stub) stub = NodeService::NewStub(MakeChannel(address));
  return stub;
}

bool GrpcNodeTransport::HasChannel(const std::string& address) {
  absl::MutexLock l(&mu_);
  return stubs_.contains(address);
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
  std::shared_ptr<NodeService::Stub> stub;
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
  call->reader = prepare(stub.get(), &call->ctx, call->request, cq_);
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
  if (absl::Status deposed = CheckMaySend(); !deposed.ok()) {
    std::move(call->done)(std::move(deposed));
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
  if (absl::Status deposed = CheckMaySend(); !deposed.ok()) {
    std::move(done)(std::move(deposed));
    return;
  }
  {
    absl::MutexLock l(&mu_);
    if (!shutdown_ && !unary_only_.count(address)) {
      auto* item = new StreamItem(this);
      item->request = request;
      item->request.set_controller_term(term_);
      item->deadline = absl::Now() + timeout;
      item->done = std::move(done);
      SendOnStreamLocked(address, item);
      return;
    }
  }
  // A node without streams; after Shutdown, this fails at once.
  StartUnaryCheckpoint(address, request, timeout, std::move(done));
}

void GrpcNodeTransport::StartUnaryCheckpoint(
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

absl::Status GrpcNodeTransport::CheckMaySend() const {
  if (!may_send_ || may_send_()) return absl::OkStatus();
  return absl::UnavailableError(
      "this controller no longer leads: nothing is sent to nodes");
}

void GrpcNodeTransport::Connect(const std::string& address) {
  if (!CheckMaySend().ok()) return;
  absl::MutexLock l(&mu_);
  if (shutdown_ || unary_only_.count(address) != 0) return;
  StreamLocked(address);
}

GrpcNodeTransport::CheckpointStream* GrpcNodeTransport::StreamLocked(
    const std::string& address) {
  CheckpointStream*& stream = streams_[address];
  if (stream == nullptr) {
    stream = new CheckpointStream(this, address);
    open_streams_.insert(stream);
    stream->rw =
        StubLocked(address)->PrepareAsyncCheckpointStream(&stream->ctx, cq_);
    stream->rw->StartCall(&stream->started_tag);
  }
  return stream;
}

void GrpcNodeTransport::SendOnStreamLocked(const std::string& address,
                                           StreamItem* item) {
  CheckpointStream* stream = StreamLocked(address);
  in_flight_.insert(item);
  if (stream->broken) {  // never answered: its final status decides
    stream->held.push_back(item);
    return;
  }
  item->call_id = ++next_call_id_;
  item->stream = stream;
  stream->pending.emplace(item->call_id, item);
  auto [it, inserted] = deadlines_.emplace(item->deadline, item);
  if (it == deadlines_.begin()) ++deadlines_changed_;
  // Into the message after the one being written: what is asked while a
  // write is in flight (or before the stream started) goes out together.
  const bool open = !stream->outgoing.empty() &&
                    !(stream->writing && stream->outgoing.size() == 1) &&
                    stream->outgoing.back().calls_size() < kMaxCallsPerMessage;
  if (!open) stream->outgoing.emplace_back();
  shutter::v1::CheckpointCall* call = stream->outgoing.back().add_calls();
  call->set_call_id(item->call_id);
  *call->mutable_checkpoint() = item->request;
  WriteLocked(stream);
}

void GrpcNodeTransport::WriteLocked(CheckpointStream* stream) {
  if (!stream->started || stream->writing || stream->broken ||
      stream->outgoing.empty()) {
    return;
  }
  stream->writing = true;
  stream->rw->Write(stream->outgoing.front(), &stream->write_tag);
}

void GrpcNodeTransport::OnStreamStarted(CheckpointStream* stream, bool ok) {
  absl::MutexLock l(&mu_);
  if (!ok) {  // never started: its final status says why
    EndStreamLocked(stream);
    return;
  }
  stream->started = true;
  stream->reading = true;
  stream->rw->Read(&stream->incoming, &stream->read_tag);
  WriteLocked(stream);
}

void GrpcNodeTransport::OnStreamWritten(CheckpointStream* stream, bool ok) {
  absl::MutexLock l(&mu_);
  stream->writing = false;
  stream->outgoing.pop_front();
  if (!ok) {  // a broken stream: the pending read fails too
    EndStreamLocked(stream);
    return;
  }
  WriteLocked(stream);
  if (stream->broken) EndStreamLocked(stream);
}

void GrpcNodeTransport::OnStreamRead(CheckpointStream* stream, bool ok) {
  absl::MutexLock l(&mu_);
  stream->reading = false;
  if (!ok) {
    EndStreamLocked(stream);
    return;
  }
  stream->answered = true;
  for (shutter::v1::CheckpointAnswer& r : *stream->incoming.mutable_answers()) {
    auto it = stream->pending.find(r.call_id());
    if (it == stream->pending.end()) continue;  // its deadline passed
    StreamItem* item = it->second;
    if (r.code() == 0) {
      CompleteItemLocked(item, std::move(*r.mutable_checkpoint()));
      continue;
    }
    const int code = r.code();
    absl::Status s(code > 0 && code <= 16 ? static_cast<absl::StatusCode>(code)
                                          : absl::StatusCode::kUnknown,
                   r.message());
    if (!r.error_reason().empty()) {
      s = WithReason(std::move(s), ErrorReasonFromName(r.error_reason()));
    }
    CompleteItemLocked(item, std::move(s));
  }
  stream->incoming.Clear();
  if (stream->broken) {
    EndStreamLocked(stream);
    return;
  }
  stream->reading = true;
  stream->rw->Read(&stream->incoming, &stream->read_tag);
}

void GrpcNodeTransport::EndStreamLocked(CheckpointStream* stream) {
  if (!stream->broken) {
    stream->broken = true;
    // New checkpoints for the address open a new stream; unless this one
    // never answered, when they wait for its final status (a node without
    // streams refuses the first, and no second one is tried).
    if (stream->answered) ForgetStreamLocked(stream);
  }
  if (stream->finishing || stream->writing || stream->reading) return;
  stream->finishing = true;
  stream->rw->Finish(&stream->status, &stream->finish_tag);
}

void GrpcNodeTransport::ForgetStreamLocked(CheckpointStream* stream) {
  auto it = streams_.find(stream->address);
  if (it != streams_.end() && it->second == stream) streams_.erase(it);
}

void GrpcNodeTransport::OnStreamFinished(CheckpointStream* stream, bool) {
  std::vector<StreamItem*> resend;
  {
    absl::MutexLock l(&mu_);
    ForgetStreamLocked(stream);
    const bool unimplemented =
        stream->status.error_code() == grpc::StatusCode::UNIMPLEMENTED &&
        !stream->answered;
    if (unimplemented && !shutdown_) unary_only_.insert(stream->address);
    if (stream->status.error_code() == grpc::StatusCode::UNAVAILABLE &&
        !streams_.contains(stream->address)) {
      // Not reachable, or its connection broke: the channel goes, so that
      // gRPC stops dialing it; the next call makes a new one.
      stubs_.erase(stream->address);
    }
    for (auto& [id, item] : stream->pending) {
      deadlines_.erase({item->deadline, item});
      item->stream = nullptr;
      if (unimplemented && !shutdown_) {
        in_flight_.erase(item);
        resend.push_back(item);
        continue;
      }
      absl::Status s = shutdown_
                           ? absl::CancelledError("controller is shutting down")
                           : absl::UnavailableError(absl::StrCat(
                                 "checkpoint stream to ", stream->address,
                                 " ended before the answer: ",
                                 stream->status.error_message()));
      item->result = std::move(s);
      finished_.push_back(item);
    }
    stream->pending.clear();
    for (StreamItem* item : stream->held) {
      if (shutdown_) {
        item->result = absl::CancelledError("controller is shutting down");
        finished_.push_back(item);
      } else if (unimplemented) {
        in_flight_.erase(item);
        resend.push_back(item);
      } else {
        SendOnStreamLocked(stream->address, item);  // on a new stream
      }
    }
    stream->held.clear();
  }
  const std::string& address = stream->address;
  if (!resend.empty()) {
    spdlog::info("node {} serves no checkpoint stream; unary calls from now on",
                 address);
  }
  for (StreamItem* item : resend) {
    StartUnaryCheckpoint(
        address, item->request,
        std::max(absl::ZeroDuration(), item->deadline - absl::Now()),
        std::move(item->done));
    delete item;
  }
  {
    // Last: Shutdown waits for it (the resent calls are counted by now).
    absl::MutexLock l(&mu_);
    open_streams_.erase(stream);
  }
  delete stream;
}

void GrpcNodeTransport::CompleteItemLocked(
    StreamItem* item,
    absl::StatusOr<shutter::v1::CreateCheckpointResponse> result) {
  item->stream->pending.erase(item->call_id);
  item->stream = nullptr;
  deadlines_.erase({item->deadline, item});
  item->result = std::move(result);
  finished_.push_back(item);
}

void GrpcNodeTransport::KeepDeadlines() {
  absl::MutexLock l(&mu_);
  while (!stopped_) {
    const absl::Time next =
        deadlines_.empty() ? absl::InfiniteFuture() : deadlines_.begin()->first;
    const uint64_t seen = deadlines_changed_;
    auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopped_ || deadlines_changed_ != seen;
    };
    mu_.AwaitWithDeadline(absl::Condition(&changed), next);
    const absl::Time now = absl::Now();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      StreamItem* item = deadlines_.begin()->second;
      CompleteItemLocked(
          item, absl::DeadlineExceededError(
                    absl::StrCat("no answer from node ", item->stream->address,
                                 " before the deadline")));
    }
  }
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
    for (CallBase* c : in_flight_) c->Cancel();
    for (CheckpointStream* s : open_streams_) s->ctx.TryCancel();
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return in_flight_.empty() && cancels_in_flight_ == 0 &&
             open_streams_.empty();
    };
    mu_.Await(absl::Condition(&idle));
    if (stopped_) return;  // an earlier Shutdown joined the threads
    // Nothing is in flight and nothing can start: the callback threads may
    // end, and the queue (if ours) shut.
    stopped_ = true;
  }
  own_queue_.reset();
  for (std::thread& t : callback_threads_) t.join();
  deadline_thread_.join();
}

}  // namespace shutter::controller
