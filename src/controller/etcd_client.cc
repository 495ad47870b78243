#include "controller/etcd_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <deque>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/queue_thread.h"
#include "common/rpc.h"
#include "common/status_macros.h"

namespace shutter::controller {

namespace ep = etcdserverpb;

bool IsEtcdUrl(absl::string_view spec) {
  return absl::StartsWith(spec, "etcd://");
}

absl::StatusOr<EtcdUrl> ParseEtcdUrl(absl::string_view url) {
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "etcd://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", url,
        "' is not an etcd URL (etcd://HOST:PORT[,HOST:PORT]/PREFIX)"));
  }
  EtcdUrl out;
  const size_t slash = rest.find('/');
  absl::string_view hosts = rest.substr(0, slash);
  absl::string_view path =
      slash == absl::string_view::npos ? "" : rest.substr(slash);
  for (absl::string_view host : absl::StrSplit(hosts, ',')) {
    const size_t colon = host.rfind(':');
    int port = 0;
    if (host.empty() || colon == absl::string_view::npos || colon == 0 ||
        !absl::SimpleAtoi(host.substr(colon + 1), &port) || port <= 0 ||
        port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat(
          "etcd URL '", url, "': endpoint '", host, "' is not HOST:PORT"));
    }
    out.endpoints.emplace_back(host);
  }
  std::string prefix(path);
  while (absl::StrContains(prefix, "//")) {
    prefix = absl::StrReplaceAll(prefix, {{"//", "/"}});
  }
  if (prefix.empty() || prefix == "/") prefix = "/shutter";
  if (prefix.back() != '/') prefix += '/';
  out.prefix = std::move(prefix);
  return out;
}

std::string PrefixRangeEnd(absl::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    unsigned char& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

struct EtcdClient::Endpoint {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<ep::KV::Stub> kv;
  std::unique_ptr<ep::Lease::Stub> lease;
  std::unique_ptr<ep::Watch::Stub> watch;
  std::unique_ptr<ep::Maintenance::Stub> maintenance;
};

namespace {

// Unreachable, or reachable without an answer in time, or a member that
// cannot serve (no leader, its own timeout): worth trying another member.
bool IsTransient(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
         s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
         s.error_code() == grpc::StatusCode::CANCELLED;
}

absl::Status EtcdRefusal(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat("etcd: ", s.error_message()));
}

std::shared_ptr<grpc::Channel> MakeEtcdChannel(
    const std::string& address,
    const std::shared_ptr<grpc::ChannelCredentials>& creds) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  // Back within a second of etcd returning (gRPC's default backoff grows
  // to two minutes).
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  // Dead connections under long-lived streams are found by pings; etcd
  // refuses clients that ping more often than every 5 s.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // A separate connection per client, not one shared with every other
  // channel of the process to the same address.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, creds, args);
}

}  // namespace

// Not in the anonymous namespace: EtcdLeaseKeeper::Stream and
// EtcdWatch::Stream, declared in the header, hold one (-Wsubobject-linkage).
namespace etcd_internal {

// A bidirectional stream on gRPC's async API, its completions served by a
// queue's thread (QueueTag; the controller's one polling thread, see
// EtcdClient::UseQueue): Send() queues a request, Next() waits for the next
// response with a deadline, so no caller ever blocks on the network beyond
// its deadline. At most one read and one write are outstanding; Finish is
// asked for once the reads are over (the stream ended or was cancelled) and
// no write is outstanding, so once it completes gRPC holds nothing of the
// call. Close() cancels it, waits for that and deletes it.
template <typename Req, typename Resp>
class BidiCall {
 public:
  // `prepare(ctx, cq)` prepares the call, e.g. stub->PrepareAsyncWatch.
  template <typename Prepare>
  BidiCall(Prepare prepare, grpc::CompletionQueue* cq)
      : stream_(prepare(&ctx_, cq)) {
    absl::MutexLock l(&mu_);
    stream_->StartCall(&started_tag_);
  }

  void Send(Req request) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    if (reads_over_) return;
    outgoing_.push_back(std::move(request));
    MaybeWriteLocked();
  }

  // The next response; DEADLINE_EXCEEDED at `deadline`; the call's final
  // status (UNAVAILABLE if it was OK: the stream ended) once it is over.
  absl::StatusOr<Resp> Next(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !responses_.empty() || done_;
    };
    if (!mu_.AwaitWithDeadline(absl::Condition(&ready), deadline)) {
      return absl::DeadlineExceededError("no answer from etcd in time");
    }
    if (!responses_.empty()) {
      Resp r = std::move(responses_.front());
      responses_.pop_front();
      return r;
    }
    if (final_.ok()) return absl::UnavailableError("etcd ended the stream");
    return final_;
  }

  void Cancel() { ctx_.TryCancel(); }

  // Cancels, waits for the call to end and deletes this.
  void Close() ABSL_LOCKS_EXCLUDED(mu_) {
    ctx_.TryCancel();
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(&done_));
    }
    delete this;
  }

 private:
  // One kind of completion of this call, run on the queue's thread.
  class Op final : public QueueTag {
   public:
    Op(BidiCall* call, void (BidiCall::*on)(bool)) : call_(call), on_(on) {}
    void Proceed(bool ok) override { (call_->*on_)(ok); }

   private:
    BidiCall* const call_;
    void (BidiCall::*const on_)(bool);
  };

  ~BidiCall() = default;

  void OnStarted(bool ok) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    if (!ok) {  // the call never started: its status says why
      reads_over_ = true;
      MaybeFinishLocked();
      return;
    }
    started_ = true;
    stream_->Read(&incoming_, &read_tag_);
    MaybeWriteLocked();
  }
  void OnWriteDone(bool ok) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    writing_ = false;
    outgoing_.pop_front();
    // A failed write means a broken stream: the pending read fails too.
    if (ok) MaybeWriteLocked();
    MaybeFinishLocked();
  }
  void OnReadDone(bool ok) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    if (!ok) {
      reads_over_ = true;
      MaybeFinishLocked();
      return;
    }
    responses_.push_back(std::move(incoming_));
    incoming_ = Resp();
    stream_->Read(&incoming_, &read_tag_);
  }
  void OnFinished(bool /*ok: always true for Finish*/)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    const grpc::Status& s = status_;
    final_ = s.ok() ? absl::OkStatus()
                    : absl::UnavailableError(absl::StrCat("etcd stream ended: ",
                                                          s.error_message()));
    if (!IsTransient(s) && !s.ok()) final_ = EtcdRefusal(s);
    done_ = true;  // Close may delete this once the lock is released
  }

  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!started_ || writing_ || reads_over_ || outgoing_.empty()) return;
    writing_ = true;
    stream_->Write(outgoing_.front(), &write_tag_);
  }
  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finishing_ || !reads_over_ || writing_) return;
    finishing_ = true;
    stream_->Finish(&status_, &finish_tag_);
  }

  grpc::ClientContext ctx_;
  const std::unique_ptr<grpc::ClientAsyncReaderWriter<Req, Resp>> stream_;
  Op started_tag_{this, &BidiCall::OnStarted};
  Op read_tag_{this, &BidiCall::OnReadDone};
  Op write_tag_{this, &BidiCall::OnWriteDone};
  Op finish_tag_{this, &BidiCall::OnFinished};
  absl::Mutex mu_;
  // gRPC writes into these while a read / Finish is outstanding; read and
  // moved only under mu_ once it has completed.
  Resp incoming_ ABSL_GUARDED_BY(mu_);
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  std::deque<Req> outgoing_ ABSL_GUARDED_BY(mu_);  // front: being written
  std::deque<Resp> responses_ ABSL_GUARDED_BY(mu_);
  absl::Status final_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_over_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace etcd_internal

EtcdClient::EtcdClient(Options options) : options_(std::move(options)) {}

// Every stream has been closed (they must not outlive the client), so its
// own queue, if it made one, drains.
EtcdClient::~EtcdClient() = default;

void EtcdClient::UseQueue(grpc::CompletionQueue* queue) {
  absl::MutexLock l(&mu_);
  shared_queue_ = queue;
}

grpc::CompletionQueue* EtcdClient::StreamQueue() {
  absl::MutexLock l(&mu_);
  if (shared_queue_ != nullptr) return shared_queue_;
  if (own_queue_ == nullptr) {
    own_queue_ = std::make_unique<QueueThread>("etcd-queue");
  }
  return own_queue_->queue();
}

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Create(
    Options options) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError("etcd: no endpoints");
  }
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options.tls.ca.empty()) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    TlsOptions tls = options.tls;
    tls.insecure = false;
    absl::Status s = CheckClientTls(tls);
    if (!s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd TLS: ", s.message()));
    }
    creds = MakeChannelCredentials(tls);
  }
  std::unique_ptr<EtcdClient> client(new EtcdClient(std::move(options)));
  for (const std::string& address : client->options_.endpoints) {
    auto e = std::make_unique<Endpoint>();
    e->address = address;
    e->channel = MakeEtcdChannel(address, creds);
    e->kv = ep::KV::NewStub(e->channel);
    e->lease = ep::Lease::NewStub(e->channel);
    e->watch = ep::Watch::NewStub(e->channel);
    e->maintenance = ep::Maintenance::NewStub(e->channel);
    client->endpoints_.push_back(std::move(e));
  }
  return client;
}

template <typename Call>
absl::Status EtcdClient::CallWithFailover(const char* what, Call call) {
  const absl::Time start = absl::Now();
  absl::Status s = CallWithFailoverOnce(what, call);
  if (options_.observer) options_.observer(what, s, absl::Now() - start);
  return s;
}

template <typename Call>
absl::Status EtcdClient::CallWithFailoverOnce(const char* what, Call call) {
  const absl::Time deadline = absl::Now() + options_.request_timeout;
  const size_t n = endpoints_.size();
  // Each member gets a fair share first, so one that hangs does not use the
  // whole budget; the last one tried gets what is left.
  const absl::Duration share =
      std::max(options_.request_timeout / static_cast<double>(n),
               absl::Milliseconds(500));
  size_t first;
  {
    absl::MutexLock l(&mu_);
    first = preferred_;
  }
  std::vector<std::string> tried;
  for (size_t i = 0; i < n; ++i) {
    const absl::Time now = absl::Now();
    if (now >= deadline) break;
    Endpoint& e = *endpoints_[(first + i) % n];
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(
        i + 1 == n ? deadline : std::min(deadline, now + share)));
    grpc::Status s = call(e, &ctx);
    if (s.ok()) {
      if (i != 0) {
        absl::MutexLock l(&mu_);
        preferred_ = (first + i) % n;
      }
      return absl::OkStatus();
    }
    if (!IsTransient(s)) return EtcdRefusal(s);
    tried.push_back(absl::StrCat(e.address, ": ", s.error_message()));
  }
  {
    absl::MutexLock l(&mu_);
    if (preferred_ == first) preferred_ = (first + 1) % n;
  }
  return absl::UnavailableError(
      absl::StrCat("etcd unreachable or without quorum (", what, " within ",
                   absl::FormatDuration(options_.request_timeout), "; ",
                   absl::StrJoin(tried, "; "), ")"));
}

EtcdClient::Endpoint& EtcdClient::Preferred() {
  absl::MutexLock l(&mu_);
  return *endpoints_[preferred_];
}

void EtcdClient::Demote(const Endpoint* endpoint) {
  absl::MutexLock l(&mu_);
  if (endpoints_[preferred_].get() == endpoint) {
    preferred_ = (preferred_ + 1) % endpoints_.size();
  }
}

template <typename Stub, typename Req, typename Resp>
absl::StatusOr<Resp> EtcdClient::Unary(
    const char* what, std::unique_ptr<Stub> Endpoint::*stub,
    grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
    const Req& request) {
  Resp out;
  absl::Status s = CallWithFailover(what, [&](Endpoint& e, auto* ctx) {
    return ((*(e.*stub)).*method)(ctx, request, &out);
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<ep::RangeResponse> EtcdClient::Range(
    const ep::RangeRequest& request) {
  return Unary("range", &Endpoint::kv, &ep::KV::Stub::Range, request);
}

absl::StatusOr<ep::TxnResponse> EtcdClient::Txn(const ep::TxnRequest& request) {
  return Unary("txn", &Endpoint::kv, &ep::KV::Stub::Txn, request);
}

absl::StatusOr<ep::PutResponse> EtcdClient::Put(const ep::PutRequest& request) {
  return Unary("put", &Endpoint::kv, &ep::KV::Stub::Put, request);
}

absl::StatusOr<ep::DeleteRangeResponse> EtcdClient::DeleteRange(
    const ep::DeleteRangeRequest& request) {
  return Unary("delete", &Endpoint::kv, &ep::KV::Stub::DeleteRange, request);
}

absl::StatusOr<ep::LeaseGrantResponse> EtcdClient::LeaseGrant(
    absl::Duration ttl) {
  ep::LeaseGrantRequest request;
  request.set_ttl(std::max<int64_t>(
      1, absl::ToInt64Seconds(absl::Ceil(ttl, absl::Seconds(1)))));
  ASSIGN_OR_RETURN(ep::LeaseGrantResponse out,
                   Unary("lease grant", &Endpoint::lease,
                         &ep::Lease::Stub::LeaseGrant, request));
  if (!out.error().empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("etcd: lease grant: ", out.error()));
  }
  return out;
}

absl::Status EtcdClient::LeaseRevoke(int64_t lease) {
  ep::LeaseRevokeRequest request;
  request.set_id(lease);
  return Unary("lease revoke", &Endpoint::lease, &ep::Lease::Stub::LeaseRevoke,
               request)
      .status();
}

absl::StatusOr<int64_t> EtcdClient::LeaseTimeToLive(int64_t lease) {
  ep::LeaseTimeToLiveRequest request;
  request.set_id(lease);
  ASSIGN_OR_RETURN(ep::LeaseTimeToLiveResponse out,
                   Unary("lease time-to-live", &Endpoint::lease,
                         &ep::Lease::Stub::LeaseTimeToLive, request));
  return out.ttl();
}

absl::Status EtcdClient::Compact(int64_t revision) {
  ep::CompactionRequest request;
  request.set_revision(revision);
  absl::Status s =
      Unary("compact", &Endpoint::kv, &ep::KV::Stub::Compact, request).status();
  // "mvcc: required revision has been compacted": already done.
  if (absl::IsOutOfRange(s)) return absl::OkStatus();
  return s;
}

absl::StatusOr<ep::StatusResponse> EtcdClient::EndpointStatus(
    const std::string& endpoint) {
  for (const auto& e : endpoints_) {
    if (e->address != endpoint) continue;
    grpc::ClientContext ctx;
    ctx.set_deadline(
        absl::ToChronoTime(absl::Now() + options_.request_timeout));
    ep::StatusRequest request;
    ep::StatusResponse out;
    grpc::Status s = e->maintenance->Status(&ctx, request, &out);
    if (!s.ok()) {
      return absl::UnavailableError(
          absl::StrCat("etcd ", endpoint, ": ", s.error_message()));
    }
    return out;
  }
  return absl::NotFoundError(absl::StrCat("not an endpoint: ", endpoint));
}

// ---- Lease keep-alive ------------------------------------------------------

using KeepAliveCall = etcd_internal::BidiCall<ep::LeaseKeepAliveRequest,
                                              ep::LeaseKeepAliveResponse>;

struct EtcdLeaseKeeper::Stream {
  Stream(EtcdClient::Endpoint* e, grpc::CompletionQueue* cq) : endpoint(e) {
    call = new KeepAliveCall(
        [e](grpc::ClientContext* ctx, grpc::CompletionQueue* q) {
          return e->lease->PrepareAsyncLeaseKeepAlive(ctx, q);
        },
        cq);
  }
  ~Stream() { call->Close(); }
  EtcdClient::Endpoint* endpoint;
  KeepAliveCall* call;
};

EtcdLeaseKeeper::EtcdLeaseKeeper(EtcdClient* client, int64_t lease)
    : client_(client), lease_(lease) {}

EtcdLeaseKeeper::~EtcdLeaseKeeper() = default;

std::unique_ptr<EtcdLeaseKeeper> EtcdClient::KeepAlive(int64_t lease) {
  return std::unique_ptr<EtcdLeaseKeeper>(new EtcdLeaseKeeper(this, lease));
}

absl::StatusOr<int64_t> EtcdLeaseKeeper::Renew(absl::Time deadline) {
  if (stream_ == nullptr) {
    stream_ =
        std::make_unique<Stream>(&client_->Preferred(), client_->StreamQueue());
  }
  ep::LeaseKeepAliveRequest request;
  request.set_id(lease_);
  stream_->call->Send(request);
  absl::StatusOr<ep::LeaseKeepAliveResponse> r = stream_->call->Next(deadline);
  if (!r.ok()) {
    // A stalled or broken stream is not used again: the answer to this
    // request could still arrive on it and be taken for the next one's.
    client_->Demote(stream_->endpoint);
    const std::string where = stream_->endpoint->address;
    stream_.reset();
    return absl::UnavailableError(absl::StrCat("etcd lease keep-alive (", where,
                                               "): ", r.status().message()));
  }
  if (r->ttl() <= 0) {
    return absl::NotFoundError(
        absl::StrCat("etcd lease ", lease_, " has expired or was revoked"));
  }
  return r->ttl();
}

// ---- Watch ----------------------------------------------------------------

using WatchCall = etcd_internal::BidiCall<ep::WatchRequest, ep::WatchResponse>;

struct EtcdWatch::Stream {
  Stream(EtcdClient::Endpoint* e, grpc::CompletionQueue* cq) {
    call = new WatchCall(
        [e](grpc::ClientContext* ctx, grpc::CompletionQueue* q) {
          return e->watch->PrepareAsyncWatch(ctx, q);
        },
        cq);
  }
  ~Stream() { call->Close(); }
  WatchCall* call;
};

std::unique_ptr<EtcdWatch> EtcdClient::Watch(
    const ep::WatchCreateRequest& create) {
  auto stream =
      std::make_unique<EtcdWatch::Stream>(&Preferred(), StreamQueue());
  ep::WatchRequest request;
  *request.mutable_create_request() = create;
  stream->call->Send(request);
  return std::unique_ptr<EtcdWatch>(new EtcdWatch(std::move(stream)));
}

EtcdWatch::EtcdWatch(std::unique_ptr<Stream> stream)
    : stream_(std::move(stream)) {}

EtcdWatch::~EtcdWatch() = default;

void EtcdWatch::Cancel() { stream_->call->Cancel(); }

absl::StatusOr<ep::WatchResponse> EtcdWatch::Next(absl::Time deadline) {
  absl::StatusOr<ep::WatchResponse> r = stream_->call->Next(deadline);
  if (!r.ok()) return r;
  if (r->canceled() || r->compact_revision() != 0) {
    stream_->call->Cancel();
    return absl::UnavailableError(absl::StrCat(
        "etcd cancelled the watch",
        r->compact_revision() != 0
            ? absl::StrCat(": compacted at revision ", r->compact_revision())
            : "",
        r->cancel_reason().empty() ? "" : ": ", r->cancel_reason()));
  }
  return r;
}

}  // namespace shutter::controller
