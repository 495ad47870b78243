#include "common/rpc.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/daemon.h"
#include "common/error_reason.h"
#include "common/health.h"
#include "common/queue_thread.h"
#include "common/text.h"
#include "common/thread_name.h"
#include "grpc/support/log.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/support/server_interceptor.h"
#include "spdlog/spdlog.h"

namespace shutter {

grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      std::string(s.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      s.error_message());
}

grpc::Status ToGrpcStatus(const absl::Status& s, grpc::ServerContextBase* ctx) {
  ErrorReason reason = GetErrorReason(s);
  if (!s.ok() && reason != ErrorReason::kUnspecified) {
    ctx->AddTrailingMetadata(kErrorReasonMetadataKey,
                             std::string(ErrorReasonName(reason)));
  }
  return ToGrpcStatus(s);
}

absl::Status FromGrpcStatus(const grpc::Status& s,
                            const grpc::ClientContext& ctx) {
  absl::Status out = FromGrpcStatus(s);
  if (out.ok()) return out;
  const auto& md = ctx.GetServerTrailingMetadata();
  auto it = md.find(kErrorReasonMetadataKey);
  if (it != md.end()) {
    out =
        WithReason(std::move(out), ErrorReasonFromName(absl::string_view(
                                       it->second.data(), it->second.size())));
  }
  return out;
}

void CallTracker::Begin() {
  absl::MutexLock l(&mu_);
  ++in_flight_;
}

void CallTracker::End() {
  absl::MutexLock l(&mu_);
  --in_flight_;
}

int CallTracker::in_flight() const {
  absl::MutexLock l(&mu_);
  return in_flight_;
}

bool CallTracker::WaitIdle(absl::Duration timeout) const {
  absl::MutexLock l(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return in_flight_ == 0;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
}

namespace {

using grpc::experimental::InterceptionHookPoints;

absl::Mutex g_observer_mu;
// Shared, not copied, by every call's interceptor.
std::shared_ptr<const RpcObserver>* g_observer ABSL_GUARDED_BY(g_observer_mu) =
    nullptr;

std::shared_ptr<const RpcObserver> CurrentObserver() {
  absl::MutexLock l(&g_observer_mu);
  return g_observer != nullptr ? *g_observer : nullptr;
}

// Per call: counts unary calls in flight, reports each call's method, code
// and latency to the RpcObserver, and turns gRPC's bare INTERNAL
// for a request it could not parse into INVALID_ARGUMENT with a reason.
class CallInterceptor : public grpc::experimental::Interceptor {
 public:
  CallInterceptor(grpc::experimental::ServerRpcInfo* info,
                  std::shared_ptr<CallTracker> calls)
      : method_(info->method() ? info->method() : "?"),
        unary_(info->type() == grpc::experimental::ServerRpcInfo::Type::UNARY),
        calls_(unary_ ? std::move(calls) : nullptr),
        observer_(CurrentObserver()),
        start_(absl::Now()) {
    if (calls_) calls_->Begin();
  }
  ~CallInterceptor() override {
    if (calls_) calls_->End();
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* m) override {
    if (unary_ &&
        m->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_MESSAGE) &&
        m->GetRecvMessage() == nullptr) {
      parse_failed_ = true;
    }
    if (observer_ && m->QueryInterceptionHookPoint(
                         InterceptionHookPoints::PRE_SEND_STATUS)) {
      grpc::StatusCode code = m->GetSendStatus().error_code();
      if (parse_failed_ && code == grpc::StatusCode::INTERNAL) {
        code = grpc::StatusCode::INVALID_ARGUMENT;
      }
      (*observer_)(method_, code, absl::ToDoubleSeconds(absl::Now() - start_));
    }
    if (parse_failed_ && m->QueryInterceptionHookPoint(
                             InterceptionHookPoints::PRE_SEND_STATUS)) {
      grpc::Status s = m->GetSendStatus();
      if (s.error_code() == grpc::StatusCode::INTERNAL) {
        m->ModifySendStatus(grpc::Status(
            grpc::StatusCode::INVALID_ARGUMENT,
            absl::StrCat("cannot parse the request to ", method_,
                         ": a string field is not valid UTF-8 (protobuf "
                         "strings must be UTF-8), or the message is "
                         "malformed")));
      }
    }
    m->Proceed();
  }

 private:
  const std::string method_;
  const bool unary_;
  const std::shared_ptr<CallTracker> calls_;
  const std::shared_ptr<const RpcObserver> observer_;
  const absl::Time start_;
  bool parse_failed_ = false;
};

class CallInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CallInterceptorFactory(std::shared_ptr<CallTracker> calls)
      : calls_(std::move(calls)) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new CallInterceptor(info, calls_);
  }

 private:
  const std::shared_ptr<CallTracker> calls_;
};

// While > 0, gRPC core's error lines are logged at debug level only (a
// failed bind is reported by the caller in one line of its own).
std::atomic<int> g_quiet_grpc{0};

void GrpcLogToSpdlog(gpr_log_func_args* args) {
  spdlog::level::level_enum level = spdlog::level::debug;
  if (g_quiet_grpc.load() == 0) {
    if (args->severity == GPR_LOG_SEVERITY_ERROR) {
      level = spdlog::level::warn;
    } else if (args->severity == GPR_LOG_SEVERITY_INFO) {
      level = spdlog::level::info;
    }
  }
  spdlog::log(level, "grpc: {} ({}:{})", args->message, args->file, args->line);
}

// Binds a throwaway socket to the address gRPC is about to take, to report
// the cause of a failure in plain words. OK if binding works (or the
// address is an ephemeral port).
absl::Status ProbeBind(const std::string& listen) {
  auto hp = ParseHostPort("listen address", listen, true);
  if (!hp.ok()) return hp.status();
  if (hp->port == 0) return absl::OkStatus();
  absl::StatusOr<int> fd = BindTcpSocket(listen);
  if (!fd.ok()) return fd.status();
  close(*fd);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int> BindTcpSocket(const std::string& listen) {
  auto hp = ParseHostPort("listen address", listen, true);
  if (!hp.ok()) return hp.status();
  std::string host = hp->host;
  if (host.size() >= 2 && host.front() == '[') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = absl::StrCat(hp->port);
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 ||
      res == nullptr) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", Quote(listen), ": cannot resolve the host"));
  }
  const addrinfo* ai = res;
  const int fd =
      socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
  int err = errno;
  if (fd >= 0) {
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      freeaddrinfo(res);
      return fd;
    }
    err = errno;
    close(fd);
  }
  freeaddrinfo(res);
  const char* why = err == EADDRINUSE      ? "address already in use"
                    : err == EADDRNOTAVAIL ? "address not available here"
                    : err == EACCES ? "permission denied (privileged port)"
                                    : strerror(err);
  return absl::UnavailableError(
      absl::StrCat("cannot listen on ", Quote(listen), ": ", why));
}

namespace {
struct Security {
  absl::Mutex mu;
  std::shared_ptr<grpc::ServerCredentials> server ABSL_GUARDED_BY(mu);
  std::shared_ptr<grpc::ChannelCredentials> channel ABSL_GUARDED_BY(mu);
  std::shared_ptr<grpc::ChannelCredentials> self_check ABSL_GUARDED_BY(mu);
};
Security& GlobalSecurity() {
  static Security* s = new Security;
  return *s;
}
std::shared_ptr<grpc::ServerCredentials> ServerCreds() {
  Security& s = GlobalSecurity();
  absl::MutexLock l(&s.mu);
  return s.server ? s.server : grpc::InsecureServerCredentials();
}
std::shared_ptr<grpc::ChannelCredentials> ChannelCreds(bool self_check) {
  Security& s = GlobalSecurity();
  absl::MutexLock l(&s.mu);
  auto c = self_check ? s.self_check : s.channel;
  return c ? c : grpc::InsecureChannelCredentials();
}
}  // namespace

void SetRpcObserver(RpcObserver observer) {
  absl::MutexLock l(&g_observer_mu);
  delete g_observer;
  g_observer =
      observer ? new std::shared_ptr<const RpcObserver>(
                     std::make_shared<const RpcObserver>(std::move(observer)))
               : nullptr;
}

void SetTransportSecurity(
    std::shared_ptr<grpc::ServerCredentials> server,
    std::shared_ptr<grpc::ChannelCredentials> channel,
    std::shared_ptr<grpc::ChannelCredentials> self_check) {
  Security& s = GlobalSecurity();
  absl::MutexLock l(&s.mu);
  s.server = std::move(server);
  s.channel = std::move(channel);
  s.self_check = std::move(self_check);
}

absl::StatusOr<RunningServer> StartGrpcServer(
    const std::string& listen, const std::vector<grpc::Service*>& services,
    const ServerLimits& limits,
    const std::function<void(grpc::ServerBuilder&)>& configure) {
  static const bool init = [] {
    // common/health.h serves grpc.health.v1 instead (why: there).
    grpc::EnableDefaultHealthCheckService(false);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    return true;
  }();
  (void)init;
  if (absl::Status s = ProbeBind(listen); !s.ok()) return s;
  RunningServer rs;
  rs.calls = std::make_shared<CallTracker>();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, ServerCreds(), &rs.port);
  builder.SetMaxReceiveMessageSize(kMaxRequestBytes);
  auto ms = [](absl::Duration d) {
    return static_cast<int>(absl::ToInt64Milliseconds(d));
  };
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                             ms(limits.handshake_timeout));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             ms(limits.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             ms(limits.keepalive_timeout));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                             ms(limits.max_connection_idle));
  if (!limits.bdp_probe) {
    builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  }
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(std::make_unique<CallInterceptorFactory>(rs.calls));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  for (grpc::Service* s : services) builder.RegisterService(s);
  rs.health = std::make_shared<HealthService>();
  builder.RegisterService(rs.health.get());
  if (configure) configure(builder);
  ++g_quiet_grpc;
  rs.server = builder.BuildAndStart();
  --g_quiet_grpc;
  if (rs.server == nullptr || rs.port == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", Quote(listen), " (address in use or invalid)"));
  }
  rs.health->SetServing(true);
  return rs;
}

void StopGrpcServer(RunningServer& server, absl::Duration grace) {
  if (!server.server) return;
  server.health->SetServing(false);
  if (server.calls && !server.calls->WaitIdle(grace)) {
    spdlog::warn(
        "{} call(s) still running after the {} grace period; "
        "cancelling them",
        server.calls->in_flight(), absl::FormatDuration(grace));
  }
  server.health->Shutdown();  // ends health watchers
  // Nothing worth waiting for is left: do not wait for idle connections.
  server.server->Shutdown(std::chrono::system_clock::now());
}

void ServeQueueTags(grpc::CompletionQueue* cq) {
  void* tag;
  bool ok;
  while (cq->Next(&tag, &ok)) static_cast<QueueTag*>(tag)->Proceed(ok);
}

QueueThread::QueueThread(const char* name)
    : thread_([this, name] {
        NameThisThread(name);
        ServeQueueTags(&cq_);
      }) {}

QueueThread::~QueueThread() {
  cq_.Shutdown();
  thread_.join();
}

uint64_t RaiseOpenFileLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  return static_cast<uint64_t>(rl.rlim_cur);
}

ListenerWatchdog::ListenerWatchdog(std::string target, absl::Duration interval,
                                   int failures, std::function<void()> on_dead)
    : target_(std::move(target)),
      interval_(interval),
      failures_(failures),
      on_dead_(std::move(on_dead)) {
  thread_ = std::thread([this] {
    NameThisThread("listener-check");
    Loop();
  });
}

ListenerWatchdog::~ListenerWatchdog() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void ListenerWatchdog::Loop() {
  int missed = 0;
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_), interval_)) return;
    }
    // A fresh connection each time: an established one says nothing about
    // whether new ones are accepted.
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto channel = grpc::CreateCustomChannel(
        target_, ChannelCreds(/*self_check=*/true), args);
    grpc::ClientContext ctx;
    ctx.set_deadline(
        std::chrono::system_clock::now() +
        absl::ToChronoMilliseconds(std::max(interval_, absl::Seconds(1))));
    ctx.set_wait_for_ready(true);
    // grpc.health.v1.HealthCheckRequest{service: ""} is the empty message
    // (a buffer of one empty slice: a buffer of none is not a message).
    grpc::Slice empty_slice{"", 0};
    grpc::ByteBuffer request{&empty_slice, 1};
    grpc::ByteBuffer response;
    grpc::Status status;
    // The async API on a queue of this thread's own (the callback API
    // would start gRPC's callback-queue threads, which then poll beside
    // every other thread of the process for as long as it runs).
    {
      grpc::CompletionQueue cq;
      grpc::GenericStub stub(channel);
      auto call = stub.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check",
                                        request, &cq);
      call->StartCall();
      call->Finish(&response, &status, &status);
      void* tag;
      bool ok;
      while (cq.Next(&tag, &ok) && tag != &status) {
      }
      cq.Shutdown();
      while (cq.Next(&tag, &ok)) {
      }
    }
    const grpc::Status& st = status;
    if (st.ok()) {
      missed = 0;
      // The service manager's watchdog is fed only by a probe that went
      // through the listener and a server thread: a daemon whose serving
      // path hangs stops feeding it and is restarted.
      daemon::NotifySystemd("WATCHDOG=1");
      continue;
    }
    ++missed;
    spdlog::warn("listener self-check {} of {} failed: {}", missed, failures_,
                 st.error_message());
    if (missed >= failures_) {
      spdlog::error(
          "the gRPC listener on {} accepts no connections any more; giving "
          "up so that the service manager restarts this daemon",
          target_);
      on_dead_();
      return;
    }
  }
}

std::unique_ptr<ListenerWatchdog> WatchListener(const std::string& listen,
                                                const RunningServer& server,
                                                absl::Duration check,
                                                std::atomic<bool>* dead) {
  // Under a systemd watchdog (WatchdogSec=), probe at least three times
  // per watchdog interval, even if the self-check was turned off.
  const absl::Duration watchdog = daemon::SystemdWatchdogInterval();
  if (watchdog > absl::ZeroDuration()) {
    const absl::Duration often = watchdog / 3;
    check = check > absl::ZeroDuration() ? std::min(check, often) : often;
    spdlog::info("systemd watchdog every {}: self-check every {}",
                 absl::FormatDuration(watchdog), absl::FormatDuration(check));
  }
  if (check <= absl::ZeroDuration()) return nullptr;
  return std::make_unique<ListenerWatchdog>(SelfAddress(listen, server.port),
                                            check, 3, [dead] {
                                              *dead = true;
                                              daemon::RaiseShutdownSignal();
                                            });
}

void RouteGrpcLogsToSpdlog() { gpr_set_log_function(GrpcLogToSpdlog); }

void SilenceGrpcLogs() {
  if (const char* keep = std::getenv("SHUTTER_GRPC_LOGS");
      keep != nullptr && std::string(keep) == "1") {
    return;
  }
  gpr_set_log_function([](gpr_log_func_args*) {});
}

std::string SelfAddress(const std::string& listen, int port) {
  std::string a = WithPort(listen, port);
  if (absl::StartsWith(a, "0.0.0.0:")) return absl::StrCat("127.0.0.1:", port);
  if (absl::StartsWith(a, "[::]:")) return absl::StrCat("[::1]:", port);
  return a;
}

std::string WithPort(const std::string& host_port, int port) {
  size_t colon = host_port.rfind(':');
  std::string host =
      colon == std::string::npos ? host_port : host_port.substr(0, colon);
  return absl::StrCat(host, ":", port);
}

namespace {
grpc::ChannelArguments ChannelArgs() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  // Reconnect quickly after a peer restarts (defaults back off to minutes).
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  return args;
}
}  // namespace

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target) {
  return grpc::CreateCustomChannel(target, ChannelCreds(/*self_check=*/false),
                                   ChannelArgs());
}

std::shared_ptr<grpc::Channel> MakeControlChannel(const std::string& target) {
  grpc::ChannelArguments args = ChannelArgs();
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  return grpc::CreateCustomChannel(target, ChannelCreds(/*self_check=*/false),
                                   args);
}

}  // namespace shutter
