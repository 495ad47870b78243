#ifndef SHUTTER_CONTROLLER_SERVING_GATE_H_
#define SHUTTER_CONTROLLER_SERVING_GATE_H_

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/rpc.h"
#include "common/security.h"
#include "controller/services.h"
#include "shutter/v1/admin.grpc.pb.h"
#include "shutter/v1/controller.grpc.pb.h"

namespace shutter::controller {

// Trailing metadata naming the leader on a follower's UNAVAILABLE answer.
inline constexpr char kLeaderMetadataKey[] = "shutter-leader";

// The services of one term of leadership (not owned: `keep` owns them).
struct TermServices {
  AdminServiceImpl* admin = nullptr;
  ControllerServiceImpl* node_facing = nullptr;
};

// What the process' gRPC server reaches: the current term's services
// while this controller leads, else an answer that sends the caller to the
// leader. Calls in flight keep their term's services alive (shared
// ownership) after the term ends; the term's parts then refuse them
// (UNAVAILABLE: shutting down). Thread-safe.
class ServingGate {
 public:
  // `leader_address`: where the leader is, as this controller knows it
  // ("" if none is known); `self`: this controller's own address (a
  // controller that has won but is still loading names itself).
  // Read only once a leader is known (so after the election started).
  ServingGate(std::function<std::string()> leader_address,
              std::function<std::string()> self)
      : leader_address_(std::move(leader_address)), self_(std::move(self)) {}

  void Set(std::shared_ptr<const TermServices> services)
      ABSL_LOCKS_EXCLUDED(mu_);
  std::shared_ptr<const TermServices> Current() const ABSL_LOCKS_EXCLUDED(mu_);

  // UNAVAILABLE naming the leader, with the kLeaderMetadataKey trailer; or
  // "no leader elected" when none is known, or "taking over" while this
  // controller has won and still loads its state (no trailer: retry).
  grpc::Status Redirect(grpc::ServerContextBase* ctx) const;

 private:
  const std::function<std::string()> leader_address_;
  const std::function<std::string()> self_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const TermServices> current_ ABSL_GUARDED_BY(mu_);
};

// AdminService as served: each call goes to the leading term's
// AdminServiceImpl or is redirected; ListControllers is answered by any
// controller (viewer role) through `list_controllers`.
class AdminGate final : public shutter::v1::AdminService::Service {
 public:
  AdminGate(
      const ServingGate* gate, std::shared_ptr<const Authorizer> authz,
      std::function<absl::StatusOr<shutter::v1::ListControllersResponse>()>
          list_controllers)
      : gate_(gate),
        authz_(std::move(authz)),
        list_controllers_(std::move(list_controllers)) {}

#define SHUTTER_ADMIN_FORWARD(Method)                                     \
  grpc::Status Method(grpc::ServerContext* ctx,                           \
                      const shutter::v1::Method##Request* request,        \
                      shutter::v1::Method##Response* response) override { \
    std::shared_ptr<const TermServices> term = gate_->Current();          \
    if (term == nullptr) return gate_->Redirect(ctx);                     \
    return term->admin->Method(ctx, request, response);                   \
  }
  SHUTTER_ADMIN_FORWARD(CreateSnapshot)
  SHUTTER_ADMIN_FORWARD(GetSnapshot)
  SHUTTER_ADMIN_FORWARD(ListSnapshots)
  SHUTTER_ADMIN_FORWARD(ListNodes)
  SHUTTER_ADMIN_FORWARD(ListPartitions)
  SHUTTER_ADMIN_FORWARD(CancelSnapshot)
  SHUTTER_ADMIN_FORWARD(VerifySnapshot)
  SHUTTER_ADMIN_FORWARD(RemoveNode)
  SHUTTER_ADMIN_FORWARD(SetNodeLimit)
  SHUTTER_ADMIN_FORWARD(DeleteSnapshot)
  SHUTTER_ADMIN_FORWARD(PinSnapshot)
  SHUTTER_ADMIN_FORWARD(ApplyRetention)
  SHUTTER_ADMIN_FORWARD(CollectGarbage)
  SHUTTER_ADMIN_FORWARD(GetRepositoryStats)
  SHUTTER_ADMIN_FORWARD(CreateSchedule)
  SHUTTER_ADMIN_FORWARD(ListSchedules)
  SHUTTER_ADMIN_FORWARD(SetSchedulePaused)
  SHUTTER_ADMIN_FORWARD(DeleteSchedule)
  SHUTTER_ADMIN_FORWARD(RestoreSnapshot)
#undef SHUTTER_ADMIN_FORWARD

  grpc::Status ListControllers(
      grpc::ServerContext* ctx,
      const shutter::v1::ListControllersRequest* request,
      shutter::v1::ListControllersResponse* response) override;

 private:
  const ServingGate* const gate_;
  const std::shared_ptr<const Authorizer> authz_;
  const std::function<absl::StatusOr<shutter::v1::ListControllersResponse>()>
      list_controllers_;
};

// ControllerService (heartbeats) as served: to the leading term, or
// redirected so the node follows the leader.
//
// HeartbeatStream is served with gRPC's async API on a completion queue
// drained by one thread ("queue"), which the controller's calls to nodes
// share (queue()): an open stream holds no thread, and a beat is handled
// where it was polled, not handed to another thread. gRPC 1.51's callback
// API would add two threads that poll beside this one and pass the poller
// role back and forth at every event; so would a second queue's thread
// (docs/performance.md, "One queue thread"). Beats of all streams are
// handled one at a time on that thread, so HeartbeatOne must not block.
//
// Life cycle: AddQueue before the server is built, Start after it started,
// CloseStreams before the server's shutdown (which would otherwise wait
// for open streams until its deadline), Stop after it and after the last
// call on queue() ended.
class ControllerGate final
    : public shutter::v1::ControllerService::WithAsyncMethod_HeartbeatStream<
          shutter::v1::ControllerService::Service> {
 public:
  explicit ControllerGate(const ServingGate* gate) : gate_(gate) {}
  ~ControllerGate() override;
  grpc::Status Heartbeat(grpc::ServerContext* ctx,
                         const shutter::v1::HeartbeatRequest* request,
                         shutter::v1::HeartbeatResponse* response) override;

  // Adds the streams' completion queue to `builder`. Once, before the
  // server is built.
  void AddQueue(grpc::ServerBuilder& builder);
  // Accepts streams from now on. Once, after the server started.
  void Start() ABSL_LOCKS_EXCLUDED(mu_);
  // Cancels every open stream and refuses new ones (UNAVAILABLE).
  void CloseStreams() ABSL_LOCKS_EXCLUDED(mu_);
  // After the server's Shutdown and the last call on queue(): waits for
  // the last stream to end, shuts the queue down and joins its thread.
  // Idempotent; the destructor calls it.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);
  // Open streams (for tests and metrics).
  int open_streams() const ABSL_LOCKS_EXCLUDED(mu_);
  // The queue, for client calls whose tags are QueueTags (their Proceed
  // runs on the queue's thread), from Start until Stop. Null before
  // AddQueue.
  grpc::CompletionQueue* queue() const { return cq_.get(); }

  class Stream;

 private:
  friend class Stream;
  // One beat of a stream: to the leading term, or the redirect.
  grpc::Status Beat(grpc::ServerContextBase* ctx,
                    const shutter::v1::HeartbeatRequest& request,
                    shutter::v1::HeartbeatResponse* response) const;
  // Asks the server for the next new stream. Requires mu_ (Stop shuts the
  // queue down under it).
  void RequestStream() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A requested stream arrived (ok) or the server shut down (!ok): true to
  // serve it, false to refuse it (closing).
  bool Accepted(Stream* s, bool ok) ABSL_LOCKS_EXCLUDED(mu_);
  void Forget(Stream* s) ABSL_LOCKS_EXCLUDED(mu_);

  const ServingGate* const gate_;
  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  std::thread thread_;
  mutable absl::Mutex mu_;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  // A new-stream request is outstanding on cq_.
  bool requested_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::set<Stream*> streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_SERVING_GATE_H_
