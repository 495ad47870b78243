#ifndef SHUTTER_CONTROLLER_NODE_TRANSPORT_H_
#define SHUTTER_CONTROLLER_NODE_TRANSPORT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
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

  // Cancels every call in flight (their callbacks run with CANCELLED) and
  // waits until all callbacks have run. Calls made afterwards fail at once.
  virtual void Shutdown() = 0;
};

// NodeTransport over gRPC: one channel per node address, reused; callback
// API, so no thread blocks on a call.
//
// With controller high availability, a transport belongs to one term of
// leadership: every request carries `term` (nodes refuse terms older than
// the newest they have seen), and nothing is sent once `may_send` says the
// term is over (calls then fail at once with UNAVAILABLE).
class GrpcNodeTransport : public NodeTransport {
 public:
  GrpcNodeTransport() = default;
  GrpcNodeTransport(uint64_t term, std::function<bool()> may_send)
      : term_(term), may_send_(std::move(may_send)) {}
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
  void Shutdown() override ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct CallBase;
  template <typename Request, typename Response>
  struct Call;
  shutter::v1::NodeService::Stub* StubLocked(const std::string& address)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts a call that ends with `done`, tracked for Shutdown.
  template <typename Request, typename Response, typename Start>
  void StartCall(const std::string& address, const Request& request,
                 absl::Duration timeout,
                 absl::AnyInvocable<void(absl::StatusOr<Response>) &&> done,
                 Start start) ABSL_LOCKS_EXCLUDED(mu_);
  // Fire-and-forget cancel calls (counted for Shutdown; errors logged).
  template <typename Request, typename Response, typename Start>
  void StartCancel(const std::string& address, const Request& request,
                   const char* what, Start start) ABSL_LOCKS_EXCLUDED(mu_);

  const uint64_t term_ = 0;
  const std::function<bool()> may_send_;
  absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::unique_ptr<shutter::v1::NodeService::Stub>> stubs_
      ABSL_GUARDED_BY(mu_);
  std::set<CallBase*> in_flight_ ABSL_GUARDED_BY(mu_);
  int cancels_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_NODE_TRANSPORT_H_
