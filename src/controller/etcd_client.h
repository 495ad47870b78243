#ifndef SHUTTER_CONTROLLER_ETCD_CLIENT_H_
#define SHUTTER_CONTROLLER_ETCD_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/queue_thread.h"
#include "common/security.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"

namespace shutter::controller {

// Where a controller keeps its state in etcd, from
// --job-store etcd://HOST:PORT[,HOST:PORT...]/PREFIX.
struct EtcdUrl {
  std::vector<std::string> endpoints;  // "host:port", at least one
  // Every key of this controller group starts with it; starts and ends
  // with '/' ("/shutter/prod/"). A URL without a path gets "/shutter/".
  std::string prefix;
};
// INVALID_ARGUMENT naming what is wrong (scheme, an endpoint without a
// port, an empty host list).
absl::StatusOr<EtcdUrl> ParseEtcdUrl(absl::string_view url);
// True if `spec` asks for etcd ("etcd://...").
bool IsEtcdUrl(absl::string_view spec);

// etcd's range_end for "every key starting with `prefix`": the prefix with
// its last byte below 0xff incremented (etcd's clientv3.GetPrefixRangeEnd).
std::string PrefixRangeEnd(absl::string_view prefix);

class EtcdLeaseKeeper;
class EtcdWatch;

// A client of etcd's v3 gRPC API (KV, Lease, Watch, Maintenance),
// generated from etcd's own rpc.proto. One channel per endpoint; a unary
// call goes to the endpoint that answered last and, if that one is
// unreachable, to the others, all within `request_timeout`: a call never
// waits longer, whatever etcd does (a member without quorum holds a
// request until its own timeout; this client gives up first).
//
// Errors: UNAVAILABLE "etcd unreachable or without quorum (...)" when no
// endpoint answered in time (nothing is known to be applied: a write may
// or may not have been); etcd's own refusals keep their code with the
// message prefixed "etcd: " (e.g. RESOURCE_EXHAUSTED "etcd: mvcc: database
// space exceeded", INVALID_ARGUMENT "etcd: too many operations in txn
// request").
//
// Thread-safe. Leases' keepers and watches must not outlive the client.
class EtcdClient {
 public:
  struct Options {
    std::vector<std::string> endpoints;
    // TLS to etcd when tls.ca is set (cert and key: a client certificate
    // etcd may ask for); plaintext otherwise.
    TlsOptions tls;
    absl::Duration request_timeout = absl::Seconds(3);
    // Called after each unary call (all endpoints tried) with its name
    // ("txn", "range", ...), outcome and latency; for metrics. Must be
    // thread-safe and quick.
    std::function<void(const char* op, const absl::Status& status,
                       absl::Duration latency)>
        observer;
  };

  // INVALID_ARGUMENT without endpoints; TLS files are read now.
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Create(Options options);
  ~EtcdClient();

  const Options& options() const { return options_; }

  absl::StatusOr<etcdserverpb::RangeResponse> Range(
      const etcdserverpb::RangeRequest& request);
  absl::StatusOr<etcdserverpb::TxnResponse> Txn(
      const etcdserverpb::TxnRequest& request);
  absl::StatusOr<etcdserverpb::PutResponse> Put(
      const etcdserverpb::PutRequest& request);
  absl::StatusOr<etcdserverpb::DeleteRangeResponse> DeleteRange(
      const etcdserverpb::DeleteRangeRequest& request);
  // A lease of `ttl` (rounded up to whole seconds, as etcd counts).
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> LeaseGrant(
      absl::Duration ttl);
  // NOT_FOUND if the lease is already gone.
  absl::Status LeaseRevoke(int64_t lease);
  // The lease's remaining TTL in seconds (-1 if gone, as etcd says).
  absl::StatusOr<int64_t> LeaseTimeToLive(int64_t lease);
  // Discards the history (superseded versions) older than `revision`.
  // OK if it was already compacted that far.
  absl::Status Compact(int64_t revision);
  // One endpoint's own status (not failed over: this is its health).
  absl::StatusOr<etcdserverpb::StatusResponse> EndpointStatus(
      const std::string& endpoint);

  // Long-lived streams (lease keep-alives, watches) opened from now on make
  // their calls on `queue`, whose thread calls QueueTag::Proceed for each
  // completion (ServeQueueTags) and which stays open until each of them
  // has been closed: the controller's node-facing queue, so one thread
  // polls all of its connections (docs/architecture.md, "Threads"). Until
  // then, and after UseQueue(nullptr), they use a queue and thread
  // ("etcd-queue") of the client's own, started on first use.
  void UseQueue(grpc::CompletionQueue* queue) ABSL_LOCKS_EXCLUDED(mu_);

  // A keep-alive stream for `lease` (opened on first use).
  std::unique_ptr<EtcdLeaseKeeper> KeepAlive(int64_t lease);
  // A watch created by `create` (key, range_end, start_revision...).
  std::unique_ptr<EtcdWatch> Watch(
      const etcdserverpb::WatchCreateRequest& create);

 private:
  struct Endpoint;
  friend class EtcdLeaseKeeper;
  friend class EtcdWatch;

  explicit EtcdClient(Options options);
  // Runs `call` on the preferred endpoint, then the others, until one
  // answers (OK or an error of etcd's own) or the timeout passes.
  template <typename Call>
  absl::Status CallWithFailover(const char* what, Call call);
  template <typename Call>
  absl::Status CallWithFailoverOnce(const char* what, Call call);
  // One unary call of `stub`'s `method`, with failover.
  template <typename Stub, typename Req, typename Resp>
  absl::StatusOr<Resp> Unary(const char* what,
                             std::unique_ptr<Stub> Endpoint::*stub,
                             grpc::Status (Stub::*method)(grpc::ClientContext*,
                                                          const Req&, Resp*),
                             const Req& request);
  // The queue a stream opened now makes its calls on.
  grpc::CompletionQueue* StreamQueue() ABSL_LOCKS_EXCLUDED(mu_);
  // The endpoint long-lived streams use now (the preferred one).
  Endpoint& Preferred() ABSL_LOCKS_EXCLUDED(mu_);
  // A stream failed on `endpoint`: prefer the next one.
  void Demote(const Endpoint* endpoint) ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
  mutable absl::Mutex mu_;
  size_t preferred_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::CompletionQueue* shared_queue_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::unique_ptr<QueueThread> own_queue_ ABSL_GUARDED_BY(mu_);
};

// Keeps one lease alive over a LeaseKeepAlive stream, as etcd's clients do:
// each Renew() sends one keep-alive and waits for its answer. A stream
// that fails or stalls is dropped and the next Renew() opens a new one
// (on the preferred endpoint). Not thread-safe (one renewing thread).
class EtcdLeaseKeeper {
 public:
  ~EtcdLeaseKeeper();
  // The TTL (seconds) etcd granted from now on; NOT_FOUND if the lease has
  // expired or was revoked; UNAVAILABLE if no answer came by `deadline`.
  absl::StatusOr<int64_t> Renew(absl::Time deadline);

 private:
  friend class EtcdClient;
  struct Stream;
  EtcdLeaseKeeper(EtcdClient* client, int64_t lease);
  EtcdClient* const client_;
  const int64_t lease_;
  std::unique_ptr<Stream> stream_;
};

// One watch over a key range, from a revision: Next() returns the events
// of each WatchResponse in order. Not thread-safe; Cancel() may be called
// from another thread to end a waiting Next().
class EtcdWatch {
 public:
  ~EtcdWatch();
  // The next batch of events (may be empty: progress), waiting until
  // `deadline` (then DEADLINE_EXCEEDED, the watch still usable).
  // UNAVAILABLE once the stream has ended (etcd gone, the watch cancelled,
  // or compacted: the message says which); a new watch must be made.
  absl::StatusOr<etcdserverpb::WatchResponse> Next(absl::Time deadline);
  void Cancel();

 private:
  friend class EtcdClient;
  struct Stream;
  explicit EtcdWatch(std::unique_ptr<Stream> stream);
  std::unique_ptr<Stream> stream_;
};

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_ETCD_CLIENT_H_
