#ifndef SHUTTER_CONTROLLER_NODE_TRANSPORT_H_
#define SHUTTER_CONTROLLER_NODE_TRANSPORT_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/queue_thread.h"
#include "shutter/v1/node.grpc.pb.h"

namespace shutter::controller {

// How the controller calls nodes. Injected so unit tests can complete calls
// by hand; the real implementation is gRPC. Implementations are
// thread-safe.
class NodeTransport {
 public:
  using Callback = absl::AnyInvocable<
      void(absl::StatusOr<shutter::v1::CreateCheckpointResponse>) &&>;

  virtual ~NodeTransport() = default;

  // Starts CreateCheckpoint on the node at `address`; `done` runs exactly
  // once: on a transport thread, or inline (CANCELLED) after Shutdown().
  // DEADLINE_EXCEEDED after
  // `timeout`.
  virtual void CreateCheckpoint(
      const std::string& address,
      const shutter::v1::CreateCheckpointRequest& request,
      absl::Duration timeout, Callback done) = 0;

  // Asks the node at `address` to cancel its checkpoints of `snapshot_id`
  // (NodeService.CancelCheckpoints). Best effort and asynchronous: errors
  // are logged; the in-flight CreateCheckpoint calls then end with
  // CANCELLED.
  virtual void CancelCheckpoints(const std::string& address,
                                 const std::string& snapshot_id) = 0;

  using RestoreCallback = absl::AnyInvocable<
      void(absl::StatusOr<shutter::v1::RestorePartitionResponse>) &&>;
  // NodeService.RestorePartition and CancelRestores, as above. The
  // defaults answer UNIMPLEMENTED (transports of tests without restores).
  virtual void RestorePartition(
      const std::string& address,
      const shutter::v1::RestorePartitionRequest& request,
      absl::Duration timeout, RestoreCallback done) {
    std::move(done)(absl::UnimplementedError("restores not supported"));
  }
  virtual void CancelRestores(const std::string& address,
                              const std::string& restore_id) {}

  using VerifyCallback = absl::AnyInvocable<
      void(absl::StatusOr<shutter::v1::VerifyPartitionResponse>) &&>;
  // NodeService.VerifyPartition and CancelVerifies, as above. The defaults
  // answer UNIMPLEMENTED (transports of tests without verifies).
  virtual void VerifyPartition(
      const std::string& address,
      const shutter::v1::VerifyPartitionRequest& request,
      absl::Duration timeout, VerifyCallback done) {
    std::move(done)(absl::UnimplementedError("verifies not supported"));
  }
  virtual void CancelVerifies(const std::string& address,
                              const std::string& verify_id) {}

  // Readies what asking the node at `address` for a checkpoint needs, so
  // that its first request does not wait for it: called when a node
  // registers or moves to a new address, long before a job needs it.
  // Cheap and idempotent; nothing is reported (a node that cannot be
  // reached fails its first request as it would have). The default does
  // nothing.
  virtual void Connect(const std::string& address) {}

  // Cancels every call in flight (their callbacks run with CANCELLED) and
  // waits until all callbacks have run. Calls made afterwards fail at once.
  virtual void Shutdown() = 0;
};

// NodeTransport over gRPC: one channel per node address, reused; gRPC's
// async API, so no thread blocks on a call. Checkpoints go over one
// NodeService.CheckpointStream per node, opened at the first and kept
// while the transport lives (a stream message costs less than a unary
// call, and what is asked while a message is being written goes out
// together in the next); a node that answers the stream UNIMPLEMENTED gets
// unary CreateCheckpoint calls from then on (its requests on the stream are
// sent again that way). A stream that breaks fails its requests with
// UNAVAILABLE and no reason (never answered, so retried); the next
// checkpoint opens a new one. Deadlines of streamed requests are kept by
// a thread of the transport that sleeps until the earliest. Completions come
// through a queue: the controller's (ControllerGate::queue(), whose one thread
// also serves the heartbeat streams and is the only one polling the process'
// connections), or one of the transport's own with a thread to drain it.
// The callbacks run on a few callback threads of the transport, so that
// one that blocks (an answer checked with a HEAD on S3) delays neither
// other answers nor the queue. The callback API is not used: its two
// threads per process would poll beside the queue's and hand the poller
// role back and forth at every event (docs/performance.md, "One queue
// thread").
//
// With controller high availability, a transport belongs to one term of
// leadership: every request carries `term` (nodes refuse terms older than
// the newest they have seen), and nothing is sent once `may_send` says the
// term is over (calls then fail at once with UNAVAILABLE).
class GrpcNodeTransport : public NodeTransport {
 public:
  GrpcNodeTransport() : GrpcNodeTransport(0, nullptr) {}
  // `queue`: a queue whose thread calls QueueTag::Proceed for each
  // completion, open until this transport's Shutdown has returned; null
  // for a queue and thread of the transport's own.
  GrpcNodeTransport(uint64_t term, std::function<bool()> may_send,
                    grpc::CompletionQueue* queue = nullptr);
  ~GrpcNodeTransport() override;

  void CreateCheckpoint(const std::string& address,
                        const shutter::v1::CreateCheckpointRequest& request,
                        absl::Duration timeout, Callback done) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void CancelCheckpoints(const std::string& address,
                         const std::string& snapshot_id) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void RestorePartition(const std::string& address,
                        const shutter::v1::RestorePartitionRequest& request,
                        absl::Duration timeout, RestoreCallback done) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void CancelRestores(const std::string& address,
                      const std::string& restore_id) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void VerifyPartition(const std::string& address,
                       const shutter::v1::VerifyPartitionRequest& request,
                       absl::Duration timeout, VerifyCallback done) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void CancelVerifies(const std::string& address,
                      const std::string& verify_id) override
      ABSL_LOCKS_EXCLUDED(mu_);
  // Opens the node's checkpoint stream (and so its connection) if it has
  // none: the first job's requests then go out at once instead of behind
  // a TCP and HTTP/2 handshake each (docs/performance.md, "Connected
  // before the first job"). Nothing for a node known to serve no
  // streams, or once this term may no longer send.
  void Connect(const std::string& address) override ABSL_LOCKS_EXCLUDED(mu_);
  // Not from a callback of this transport (it waits for them).
  void Shutdown() override ABSL_LOCKS_EXCLUDED(mu_);

  // Whether the transport holds a channel to `address` (tests).
  bool HasChannel(const std::string& address) ABSL_LOCKS_EXCLUDED(mu_);

  // Callback threads: enough for the answers' checks to overlap.
  static constexpr int kCallbackThreads = 4;

 private:
  struct CallBase;
  template <typename Request, typename Response>
  struct Call;
  struct StreamItem;        // a checkpoint asked over a stream
  struct CheckpointStream;  // one per node address
  // Sends `item` on the address' stream, opening one if there is none.
  // The address' stream, opened if there is none.
  CheckpointStream* StreamLocked(const std::string& address)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendOnStreamLocked(const std::string& address, StreamItem* item)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteLocked(CheckpointStream* stream) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes `stream` from streams_ if it is the address' stream.
  void ForgetStreamLocked(CheckpointStream* stream)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The queue thread's events of a stream.
  void OnStreamStarted(CheckpointStream* stream, bool ok)
      ABSL_LOCKS_EXCLUDED(mu_);
  void OnStreamWritten(CheckpointStream* stream, bool ok)
      ABSL_LOCKS_EXCLUDED(mu_);
  void OnStreamRead(CheckpointStream* stream, bool ok) ABSL_LOCKS_EXCLUDED(mu_);
  // Finish completed (always `ok`; the stream's status says how it ended).
  void OnStreamFinished(CheckpointStream* stream, bool)
      ABSL_LOCKS_EXCLUDED(mu_);
  // CreateCheckpoint as a unary call (nodes without streams).
  void StartUnaryCheckpoint(const std::string& address,
                            const shutter::v1::CreateCheckpointRequest& request,
                            absl::Duration timeout, Callback done)
      ABSL_LOCKS_EXCLUDED(mu_);
  // UNAVAILABLE once `may_send_` says this term is over.
  absl::Status CheckMaySend() const;
  // No more reads or writes will complete: asks for the final status once.
  void EndStreamLocked(CheckpointStream* stream)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `item` has its result: off its stream and the deadlines, to a callback
  // thread.
  void CompleteItemLocked(
      StreamItem* item,
      absl::StatusOr<shutter::v1::CreateCheckpointResponse> result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fails streamed requests whose deadline passed.
  void KeepDeadlines() ABSL_LOCKS_EXCLUDED(mu_);
  // The address' stub (and channel), made if there is none. Shared: a
  // call holds it while it starts, as the transport may drop it meanwhile.
  std::shared_ptr<shutter::v1::NodeService::Stub> StubLocked(
      const std::string& address) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts a call that ends with `done`, tracked for Shutdown. `prepare`
  // is the stub's PrepareAsync method.
  template <typename Request, typename Response, typename Prepare>
  void StartCall(const std::string& address, const Request& request,
                 absl::Duration timeout,
                 absl::AnyInvocable<void(absl::StatusOr<Response>) &&> done,
                 Prepare prepare) ABSL_LOCKS_EXCLUDED(mu_);
  // Fire-and-forget cancel calls (counted for Shutdown; errors logged).
  template <typename Request, typename Response, typename Prepare>
  void StartCancel(const std::string& address, const Request& request,
                   const char* what, Prepare prepare) ABSL_LOCKS_EXCLUDED(mu_);
  // Counts `call` (in flight, or a cancel) and starts it on the queue;
  // false, starting nothing, after Shutdown.
  template <typename Request, typename Response, typename Prepare>
  bool Launch(Call<Request, Response>* call, const std::string& address,
              Prepare prepare) ABSL_LOCKS_EXCLUDED(mu_);
  void RunCallbacks();  // a callback thread
  // From the queue's thread: `call` completed; a callback thread runs it.
  void Finished(CallBase* call) ABSL_LOCKS_EXCLUDED(mu_);
  void Ended(CallBase* call) ABSL_LOCKS_EXCLUDED(mu_);

  const uint64_t term_ = 0;
  const std::function<bool()> may_send_;
  std::unique_ptr<QueueThread> own_queue_;  // without `queue`
  grpc::CompletionQueue* const cq_;
  std::vector<std::thread> callback_threads_;
  absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;  // threads told to end
  // One channel per address. Dropped when the address' stream ends
  // UNAVAILABLE (the node could not be reached, or its connection broke):
  // gRPC would otherwise dial a node that is gone every second for as long
  // as the channel lives (docs/performance.md, "Connected before the first
  // job"); the next call to the address makes a new one.
  absl::flat_hash_map<std::string,
                      std::shared_ptr<shutter::v1::NodeService::Stub>>
      stubs_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<CallBase*> in_flight_ ABSL_GUARDED_BY(mu_);
  int cancels_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // Calls whose Finish completed, for the callback threads.
  std::deque<CallBase*> finished_ ABSL_GUARDED_BY(mu_);
  // The stream each address' checkpoints go on (absent until the first,
  // and after one broke); every stream whose final status has not come
  // back yet; addresses that do not serve streams.
  absl::flat_hash_map<std::string, CheckpointStream*> streams_
      ABSL_GUARDED_BY(mu_);
  std::set<CheckpointStream*> open_streams_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> unary_only_ ABSL_GUARDED_BY(mu_);
  uint64_t next_call_id_ ABSL_GUARDED_BY(mu_) = 0;
  // Streamed requests by deadline; bumped when the earliest one changes.
  std::set<std::pair<absl::Time, StreamItem*>> deadlines_ ABSL_GUARDED_BY(mu_);
  uint64_t deadlines_changed_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread deadline_thread_;
};

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_NODE_TRANSPORT_H_
