#ifndef SHUTTER_CONTROLLER_SERVICES_H_
#define SHUTTER_CONTROLLER_SERVICES_H_

#include <memory>

#include "common/security.h"
#include "controller/job_engine.h"
#include "controller/maintenance.h"
#include "controller/membership.h"
#include "controller/node_registry.h"
#include "controller/schedules.h"
#include "shutter/v1/admin.grpc.pb.h"
#include "shutter/v1/controller.grpc.pb.h"

namespace shutter::controller {

// The operator API. Handlers only read or update in-memory state and the
// job store, so they run on gRPC's sync thread pool. Every call is first
// authorized (read-only calls and dry runs need the viewer role, the rest
// the operator role). Thread-safe; the pointers must outlive the service.
class AdminServiceImpl final : public shutter::v1::AdminService::Service {
 public:
  AdminServiceImpl(
      NodeRegistry* registry, JobEngine* coordinator, Maintenance* maintenance,
      ScheduleRunner* schedules,
      std::shared_ptr<const Authorizer> authz = Authorizer::AllowAll())
      : registry_(registry),
        coordinator_(coordinator),
        maintenance_(maintenance),
        schedules_(schedules),
        authz_(std::move(authz)) {}

  grpc::Status CreateSnapshot(grpc::ServerContext*,
                              const shutter::v1::CreateSnapshotRequest*,
                              shutter::v1::CreateSnapshotResponse*) override;
  grpc::Status GetSnapshot(grpc::ServerContext*,
                           const shutter::v1::GetSnapshotRequest*,
                           shutter::v1::GetSnapshotResponse*) override;
  grpc::Status ListSnapshots(grpc::ServerContext*,
                             const shutter::v1::ListSnapshotsRequest*,
                             shutter::v1::ListSnapshotsResponse*) override;
  grpc::Status ListNodes(grpc::ServerContext*,
                         const shutter::v1::ListNodesRequest*,
                         shutter::v1::ListNodesResponse*) override;
  grpc::Status ListPartitions(grpc::ServerContext*,
                              const shutter::v1::ListPartitionsRequest*,
                              shutter::v1::ListPartitionsResponse*) override;
  grpc::Status CancelSnapshot(grpc::ServerContext*,
                              const shutter::v1::CancelSnapshotRequest*,
                              shutter::v1::CancelSnapshotResponse*) override;
  grpc::Status VerifySnapshot(grpc::ServerContext*,
                              const shutter::v1::VerifySnapshotRequest*,
                              shutter::v1::VerifySnapshotResponse*) override;
  grpc::Status RemoveNode(grpc::ServerContext*,
                          const shutter::v1::RemoveNodeRequest*,
                          shutter::v1::RemoveNodeResponse*) override;
  grpc::Status SetNodeLimit(grpc::ServerContext*,
                            const shutter::v1::SetNodeLimitRequest*,
                            shutter::v1::SetNodeLimitResponse*) override;
  grpc::Status DeleteSnapshot(grpc::ServerContext*,
                              const shutter::v1::DeleteSnapshotRequest*,
                              shutter::v1::DeleteSnapshotResponse*) override;
  grpc::Status PinSnapshot(grpc::ServerContext*,
                           const shutter::v1::PinSnapshotRequest*,
                           shutter::v1::PinSnapshotResponse*) override;
  grpc::Status ApplyRetention(grpc::ServerContext*,
                              const shutter::v1::ApplyRetentionRequest*,
                              shutter::v1::ApplyRetentionResponse*) override;
  grpc::Status CollectGarbage(grpc::ServerContext*,
                              const shutter::v1::CollectGarbageRequest*,
                              shutter::v1::CollectGarbageResponse*) override;
  grpc::Status GetRepositoryStats(
      grpc::ServerContext*, const shutter::v1::GetRepositoryStatsRequest*,
      shutter::v1::GetRepositoryStatsResponse*) override;
  grpc::Status CreateSchedule(grpc::ServerContext*,
                              const shutter::v1::CreateScheduleRequest*,
                              shutter::v1::CreateScheduleResponse*) override;
  grpc::Status ListSchedules(grpc::ServerContext*,
                             const shutter::v1::ListSchedulesRequest*,
                             shutter::v1::ListSchedulesResponse*) override;
  grpc::Status SetSchedulePaused(
      grpc::ServerContext*, const shutter::v1::SetSchedulePausedRequest*,
      shutter::v1::SetSchedulePausedResponse*) override;
  grpc::Status DeleteSchedule(grpc::ServerContext*,
                              const shutter::v1::DeleteScheduleRequest*,
                              shutter::v1::DeleteScheduleResponse*) override;
  grpc::Status RestoreSnapshot(grpc::ServerContext*,
                               const shutter::v1::RestoreSnapshotRequest*,
                               shutter::v1::RestoreSnapshotResponse*) override;

 private:
  // Adds the limit, its reason, the pin and the load to `n`.
  void DescribeLimit(shutter::v1::NodeInfo& n) const;

  NodeRegistry* const registry_;
  JobEngine* const coordinator_;
  Maintenance* const maintenance_;
  ScheduleRunner* const schedules_;
  const std::shared_ptr<const Authorizer> authz_;
};

// Heartbeats from nodes, handed to Membership (registry, limits). With
// TLS, a heartbeat is accepted only from a certificate naming the node id
// it reports. Thread-safe; the pointers must outlive the service.
class ControllerServiceImpl final
    : public shutter::v1::ControllerService::Service {
 public:
  ControllerServiceImpl(
      Membership* membership,
      std::shared_ptr<const Authorizer> authz = Authorizer::AllowAll())
      : membership_(membership), authz_(std::move(authz)) {}

  grpc::Status Heartbeat(grpc::ServerContext*,
                         const shutter::v1::HeartbeatRequest*,
                         shutter::v1::HeartbeatResponse*) override;
  // One heartbeat, unary or one message of a HeartbeatStream.
  grpc::Status HeartbeatOne(const grpc::ServerContextBase& ctx,
                            const shutter::v1::HeartbeatRequest& request,
                            shutter::v1::HeartbeatResponse* response);

 private:
  Membership* const membership_;
  const std::shared_ptr<const Authorizer> authz_;
};

}  // namespace shutter::controller

#endif  // SHUTTER_CONTROLLER_SERVICES_H_
