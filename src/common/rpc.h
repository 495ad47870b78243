#ifndef SHUTTER_COMMON_RPC_H_
#define SHUTTER_COMMON_RPC_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

// gRPC glue shared by the daemons and the CLI.
namespace shutter {

// Largest request a Shutter server accepts. Responses are kept under the
// 4 MiB that gRPC clients accept by default (see partition_data.proto).
inline constexpr int kMaxRequestBytes = 8 << 20;

// Trailing metadata key carrying an error's ErrorReason (common/
// error_reason.h) from a server to its client.
inline constexpr char kErrorReasonMetadataKey[] = "shutter-error-reason";

// absl and gRPC status codes are numerically identical; these convert at
// the service boundary.
grpc::Status ToGrpcStatus(const absl::Status& s);
absl::Status FromGrpcStatus(const grpc::Status& s);
// Server side: also attaches the status' ErrorReason, if any, to `ctx` as
// trailing metadata.
grpc::Status ToGrpcStatus(const absl::Status& s, grpc::ServerContextBase* ctx);
// Client side: also restores the ErrorReason the server attached, if any.
absl::Status FromGrpcStatus(const grpc::Status& s,
                            const grpc::ClientContext& ctx);

// Counts a server's unary calls in flight, so shutdown can wait for them
// and not for idle connections. Thread-safe.
class CallTracker {
 public:
  void Begin() ABSL_LOCKS_EXCLUDED(mu_);
  void End() ABSL_LOCKS_EXCLUDED(mu_);
  int in_flight() const ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until no call is in flight or `timeout` passes; true if none is.
  bool WaitIdle(absl::Duration timeout) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

// Connection hygiene of a server, against connection storms: slow or
// stalled handshakes and half-open connections are closed instead of
// piling up until the process runs out of file descriptors.
struct ServerLimits {
  // A connection that has not finished its HTTP/2 handshake by then is
  // closed (gRPC's default is 120 s).
  absl::Duration handshake_timeout = absl::Seconds(10);
  // Ping a connection silent this long; close it if the ping is not
  // answered within keepalive_timeout (finds dead peers).
  absl::Duration keepalive_time = absl::Seconds(30);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  // Close a connection with no call for this long.
  absl::Duration max_connection_idle = absl::Minutes(5);
  // HTTP/2 bandwidth-delay probing: a PING (and timers) with incoming data
  // to grow flow-control windows. Worth it for bulk streams (a node's
  // PartitionData); for a server of small frequent messages (the
  // controller's heartbeats) it is most of the timer work and one more
  // packet each way per message.
  bool bdp_probe = true;
};

class HealthService;  // common/health.h

// The tag of an operation on a gRPC completion queue whose thread calls
// Proceed with each completion (e.g. controller::ControllerGate's queue,
// shared by the controller's heartbeat streams and its calls to nodes).
class QueueTag {
 public:
  // The operation completed; `ok` as CompletionQueue::Next says.
  virtual void Proceed(bool ok) = 0;

 protected:
  ~QueueTag() = default;
};

// A queue's thread: calls QueueTag::Proceed for each completion of `cq`
// until it has been shut down and drained.
void ServeQueueTags(grpc::CompletionQueue* cq);

// A started gRPC server and the port it bound.
struct RunningServer {
  std::unique_ptr<grpc::Server> server;
  // grpc.health.v1, registered on `server`.
  std::shared_ptr<HealthService> health;
  int port = 0;
  std::shared_ptr<CallTracker> calls;
};

// Builds and starts a server listening on `listen` ("host:port", port 0 for
// an ephemeral port) serving `services` (sync or callback API; not owned;
// must outlive the server), plus server reflection and the grpc.health.v1
// health service. Every server:
//  - refuses requests over kMaxRequestBytes;
//  - answers a request that cannot be parsed (e.g. a string field that is
//    not valid UTF-8) with INVALID_ARGUMENT and a reason, not gRPC's bare
//    INTERNAL;
//  - counts unary calls in flight (RunningServer::calls).
// UNAVAILABLE naming the address and the cause (in use, not available,
// permission) if it cannot be bound; gRPC's own log lines about the
// failure are kept out of the way (debug level).
// `configure`, if set, is called with the builder before the server is
// built (e.g. to add a completion queue for a service's async methods).
absl::StatusOr<RunningServer> StartGrpcServer(
    const std::string& listen, const std::vector<grpc::Service*>& services,
    const ServerLimits& limits = {},
    const std::function<void(grpc::ServerBuilder&)>& configure = nullptr);

// A TCP socket bound (not yet listening) to `listen` ("host:port", port 0
// for an ephemeral port; "[v6]:port"), SO_REUSEADDR, close-on-exec: for
// listeners other than gRPC's. UNAVAILABLE naming the address and the
// cause (cannot resolve, in use, not available, permission).
absl::StatusOr<int> BindTcpSocket(const std::string& listen);

// Raises this process' soft limit on open files to its hard limit (a
// controller holds a connection per node and per client). Returns the
// soft limit in force afterwards.
uint64_t RaiseOpenFileLimit();

// Checks from inside a daemon that its gRPC listener still accepts
// connections: every `interval` it opens a fresh connection to
// `target` (never a pooled one) and calls grpc.health.v1 Check. After
// `failures` misses in a row it calls `on_dead` once (the daemon then
// marks itself NOT_SERVING and exits non-zero, so that systemd restarts
// it: gRPC 1.51 can give its listener up after accept() fails with
// EMFILE, leaving a live process that accepts nothing). Thread-safe.
class ListenerWatchdog {
 public:
  ListenerWatchdog(std::string target, absl::Duration interval, int failures,
                   std::function<void()> on_dead);
  // Stops the thread.
  ~ListenerWatchdog();

 private:
  void Loop();
  const std::string target_;
  const absl::Duration interval_;
  const int failures_;
  const std::function<void()> on_dead_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Stops `server` without waiting on idle client connections: waits up to
// `grace` for the unary calls in flight to end, then shuts down at once,
// cancelling whatever is still running. Callers should first stop handing
// out new long-running work.
void StopGrpcServer(RunningServer& server, absl::Duration grace);

// The daemons' use of ListenerWatchdog: checks `server` every `check` (no
// watchdog if zero); if its listener dies, sets *dead and raises the
// shutdown signal (the daemon then exits 1).
std::unique_ptr<ListenerWatchdog> WatchListener(const std::string& listen,
                                                const RunningServer& server,
                                                absl::Duration check,
                                                std::atomic<bool>* dead);

// Sends gRPC core's own log lines through spdlog ("grpc: ..."), so a
// daemon's stderr has a single format. Call once, early in main().
void RouteGrpcLogsToSpdlog();

// Drops gRPC core's own log lines (a command-line tool reports a failed
// call in one line of its own; "Handshake failed ..." from inside gRPC
// would only precede it). SHUTTER_GRPC_LOGS=1 keeps them, for debugging.
void SilenceGrpcLogs();

// The address this process reaches its own listener at: `listen` with the
// bound port, and a wildcard host (0.0.0.0, [::]) replaced by loopback.
std::string SelfAddress(const std::string& listen, int port);

// Returns "host:port" with the port replaced by `port`.
std::string WithPort(const std::string& host_port, int port);

// Creates a channel to `target` with Shutter's client settings and the
// process' channel credentials (insecure unless SetTransportSecurity).
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target);
// As MakeChannel, for small frequent messages (a node's heartbeats to the
// controller): no HTTP/2 bandwidth-delay probing (see ServerLimits).
std::shared_ptr<grpc::Channel> MakeControlChannel(const std::string& target);

// Called when a server call ends: its full method name
// ("/shutter.v1.AdminService/CreateSnapshot"), status code and latency
// (for metrics). Set once, before servers start; servers started
// afterwards use it. Must be thread-safe and quick.
using RpcObserver = std::function<void(const std::string& method,
                                       grpc::StatusCode code, double seconds)>;
void SetRpcObserver(RpcObserver observer);

// The credentials every server this process starts, every channel
// MakeChannel creates and the listener self-check use from now on (see
// common/security.h; a daemon sets them once, early). nullptr: insecure.
void SetTransportSecurity(std::shared_ptr<grpc::ServerCredentials> server,
                          std::shared_ptr<grpc::ChannelCredentials> channel,
                          std::shared_ptr<grpc::ChannelCredentials> self_check);

}  // namespace shutter

#endif  // SHUTTER_COMMON_RPC_H_
