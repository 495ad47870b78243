#include "controller/services.h"

#include <algorithm>
#include <optional>

#include "common/rpc.h"
#include "common/text.h"
#include "controller/delete_kind.h"
#include "controller/restore_kind.h"
#include "controller/snapshot_kind.h"
#include "controller/verify_kind.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {

using namespace shutter::v1;  // NOLINT: service message types

namespace {
// The scheduler's view of a node's slots: what is in flight (tasks sent
// ahead to a node that queues them included), queued, and sent ahead.
void SetSlots(const scheduler::Scheduler::KeyStats& ks, NodeInfo& n) {
  n.set_checkpoints_in_flight(ks.in_flight);
  n.set_checkpoints_queued(ks.queued);
  n.set_checkpoints_sent_ahead(std::max(0, ks.in_flight - ks.limit));
}
}  // namespace

grpc::Status AdminServiceImpl::CreateSnapshot(grpc::ServerContext* ctx,
                                              const CreateSnapshotRequest* req,
                                              CreateSnapshotResponse* resp) {
  if (absl::Status d =
          authz_->CheckAdmin(*ctx, Role::kOperator, "CreateSnapshot");
      !d.ok()) {
    return ToGrpcStatus(d);
  }
  auto id = StartSnapshot(*coordinator_, *req);
  if (!id.ok()) {
    // The message may repeat input: escape it for the log.
    spdlog::info("CreateSnapshot rejected: {}",
                 Quote(id.status().ToString(), 1024));
    return ToGrpcStatus(id.status());
  }
  resp->set_snapshot_id(*id);
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::GetSnapshot(grpc::ServerContext* ctx,
                                           const GetSnapshotRequest* req,
                                           GetSnapshotResponse* resp) {
  if (absl::Status d = authz_->CheckAdmin(*ctx, Role::kViewer, "GetSnapshot");
      !d.ok()) {
    return ToGrpcStatus(d);
  }
  auto s = coordinator_->GetSnapshotPage(*req);
  if (!s.ok()) return ToGrpcStatus(s.status());
  *resp = std::move(s).value();
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::ListSnapshots(grpc::ServerContext* ctx,
                                             const ListSnapshotsRequest* req,
                                             ListSnapshotsResponse* resp) {
  if (absl::Status d = authz_->CheckAdmin(*ctx, Role::kViewer, "ListSnapshots");
      !d.ok()) {
    return ToGrpcStatus(d);
  }
  for (auto& s : coordinator_->ListSnapshots(req->limit(), req->type())) {
    *resp->add_snapshots() = std::move(s);
  }
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::RestoreSnapshot(
    grpc::ServerContext* ctx, const RestoreSnapshotRequest* req,
    RestoreSnapshotResponse* resp) {
  if (absl::Status d = authz_->CheckAdmin(
          *ctx, req->dry_run() ? Role::kViewer : Role::kOperator,
          "RestoreSnapshot");
      !d.ok()) {
    return ToGrpcStatus(d);
  }
  auto r = StartRestore(*coordinator_, *coordinator_->repository(), *req);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = std::move(r).value();
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::ListNodes(grpc::ServerContext* ctx,
                                         const ListNodesRequest*,
                                         ListNodesResponse* resp) {
  if (absl::Status d = authz_->CheckAdmin(*ctx, Role::kViewer, "ListNodes");
      !d.ok()) {
    return ToGrpcStatus(d);
  }
  auto stats = coordinator_->NodeStats();
  for (auto& n : registry_->ListNodes()) {
    auto it = stats.find(n.node_id());
    if (it != stats.end()) SetSlots(it->second, n);
    DescribeLimit(n);
    *resp->add_nodes() = std::move(n);
  }
  return grpc::Status::OK;
}

void AdminServiceImpl::DescribeLimit(NodeInfo& n) const {
  NodeLimits* limits = coordinator_->limits();
  if (limits == nullptr) {
    n.set_effective_limit(n.checkpoint_capacity());
    n.set_limit_reason("the capacity");
    return;
  }
  NodeLimits::View v = limits->Describe(n.node_id());
  n.set_pinned_limit(v.pinned);
  if (v.capacity == 0) {  // not heard from since this controller started
    n.set_effective_limit(static_cast<uint32_t>(
        limits->Effective(n.node_id(), n.checkpoint_capacity())));
    n.set_limit_reason(v.pinned > 0 ? "pinned by an operator"
                                    : "no heartbeat yet: the capacity");
    return;
  }
  n.set_effective_limit(v.limit);
  n.set_limit_reason(v.reason);
  if (v.has_load) *n.mutable_load() = v.load;
  n.set_idle_write_p99_micros(v.idle_write_p99_micros);
  for (const NodeLimits::Change& c : v.changes) {
    shutter::v1::LimitChange* out = n.add_limit_changes();
    out->set_at_micros(absl::ToUnixMicros(c.at));
    out->set_from_limit(c.from);
    out->set_to_limit(c.to);
    out->set_reason(c.reason);
  }
}

grpc::Status AdminServiceImpl::SetNodeLimit(grpc::ServerContext* ctx,
                                            const SetNodeLimitRequest* req,
                                            SetNodeLimitResponse* resp) {
  if (absl::Status d =
          authz_->CheckAdmin(*ctx, Role::kOperator, "SetNodeLimit");
      !d.ok()) {
    return ToGrpcStatus(d);
  }
  NodeLimits* limits = coordinator_->limits();
  if (limits == nullptr) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                        "this controller has no per-node limits");
  }
  absl::StatusOr<NodeInfo> node = registry_->Node(req->node_id());
  if (!node.ok()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("no node '", req->node_id(), "'"));
  }
  auto limit = limits->Pin(req->node_id(), req->limit());
  if (!limit.ok()) return ToGrpcStatus(limit.status());
  coordinator_->SetNodeLimit(req->node_id(), *limit);
  spdlog::info("node {}: limit {} by an operator (effective {})",
               req->node_id(),
               req->limit() == 0 ? std::string("unpinned")
                                 : absl::StrCat("pinned to ", req->limit()),
               *limit);
  NodeInfo n = *std::move(node);
  scheduler::Scheduler::KeyStats ks = coordinator_->NodeKeyStats(n.node_id());
  SetSlots(ks, n);
  DescribeLimit(n);
  *resp->mutable_node() = std::move(n);
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::ListPartitions(grpc::ServerContext* ctx,
                                              const ListPartitionsRequest*,
                                              ListPartitionsResponse* resp) {
  if (absl::Status d =
          authz_->CheckAdmin(*ctx, Role::kViewer, "ListPartitions");
      !d.ok()) {
    return ToGrpcStatus(d);
  }
  for (auto& p : registry_->ListPartitions()) {
    *resp->add_partitions() = std::move(p);
  }
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::CancelSnapshot(grpc::ServerContext* ctx,
                                              const CancelSnapshotRequest* req,
                                              CancelSnapshotResponse* resp) {
  if (absl::Status d =
          authz_->CheckAdmin(*ctx, Role::kOperator, "CancelSnapshot");
      !d.ok()) {
    return ToGrpcStatus(d);
  }
  auto s = coordinator_->CancelSnapshot(req->snapshot_id());
  if (!s.ok()) return ToGrpcStatus(s.status());
  *resp->mutable_snapshot() = std::move(*s->mutable_snapshot());
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::DeleteSnapshot(
    grpc::ServerContext* ctx, const shutter::v1::DeleteSnapshotRequest* req,
    shutter::v1::DeleteSnapshotResponse* resp) {
  if (absl::Status d =
          authz_->CheckAdmin(*ctx, Role::kOperator, "DeleteSnapshot");
      !d.ok()) {
    return ToGrpcStatus(d);
  }
  auto s = DeleteSnapshotJob(*coordinator_, req->snapshot_id(), req->force());
  if (!s.ok()) return ToGrpcStatus(s.status());
  *resp->mutable_snapshot() = std::move(s).value();
  resp->mutable_snapshot()->clear_partitions();
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::PinSnapshot(
    grpc::ServerContext* ctx, const shutter::v1::PinSnapshotRequest* req,
    shutter::v1::PinSnapshotResponse* resp) {
  if (absl::Status d = authz_->CheckAdmin(*ctx, Role::kOperator, "PinSnapshot");
      !d.ok()) {
    return ToGrpcStatus(d);
  }
  auto s = coordinator_->PinSnapshot(req->snapshot_id(), req->pinned());
  if (!s.ok()) return ToGrpcStatus(s.status());
  *resp->mutable_snapshot() = std::move(s).value();
  resp->mutable_snapshot()->clear_partitions();
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::ApplyRetention(
    grpc::ServerContext* ctx, const shutter::v1::ApplyRetentionRequest* req,
    shutter::v1::ApplyRetentionResponse* resp) {
  if (absl::Status d = authz_->CheckAdmin(
          *ctx, req->dry_run() ? Role::kViewer : Role::kOperator,
          "ApplyRetention");
      !d.ok()) {
    return ToGrpcStatus(d);
  }
  auto r = maintenance_->ApplyRetention(*req);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = std::move(r).value();
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::CollectGarbage(
    grpc::ServerContext* ctx, const shutter::v1::CollectGarbageRequest* req,
    shutter::v1::CollectGarbageResponse* resp) {
  if (absl::Status d = authz_->CheckAdmin(
          *ctx, req->dry_run() ? Role::kViewer : Role::kOperator,
          "CollectGarbage");
      !d.ok()) {
    return ToGrpcStatus(d);
  }
  auto r = maintenance_->CollectGarbage(*req);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = std::move(r).value();
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::GetRepositoryStats(
    grpc::ServerContext* ctx, const shutter::v1::GetRepositoryStatsRequest*,
    shutter::v1::GetRepositoryStatsResponse* resp) {
  if (absl::Status d =
          authz_->CheckAdmin(*ctx, Role::kViewer, "GetRepositoryStats");
      !d.ok()) {
    return ToGrpcStatus(d);
  }
  auto r = maintenance_->GetRepositoryStats();
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = std::move(r).value();
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::CreateSchedule(
    grpc::ServerContext* ctx, const shutter::v1::CreateScheduleRequest* req,
    shutter::v1::CreateScheduleResponse* resp) {
  if (absl::Status d =
          authz_->CheckAdmin(*ctx, Role::kOperator, "CreateSchedule");
      !d.ok()) {
    return ToGrpcStatus(d);
  }
  auto s = schedules_->Create(req->schedule());
  if (!s.ok()) return ToGrpcStatus(s.status());
  *resp->mutable_schedule() = std::move(s).value();
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::ListSchedules(
    grpc::ServerContext* ctx, const shutter::v1::ListSchedulesRequest*,
    shutter::v1::ListSchedulesResponse* resp) {
  if (absl::Status d = authz_->CheckAdmin(*ctx, Role::kViewer, "ListSchedules");
      !d.ok()) {
    return ToGrpcStatus(d);
  }
  for (auto& s : schedules_->List()) *resp->add_schedules() = std::move(s);
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::SetSchedulePaused(
    grpc::ServerContext* ctx, const shutter::v1::SetSchedulePausedRequest* req,
    shutter::v1::SetSchedulePausedResponse* resp) {
  if (absl::Status d =
          authz_->CheckAdmin(*ctx, Role::kOperator, "SetSchedulePaused");
      !d.ok()) {
    return ToGrpcStatus(d);
  }
  auto s = schedules_->SetPaused(req->name(), req->paused());
  if (!s.ok()) return ToGrpcStatus(s.status());
  *resp->mutable_schedule() = std::move(s).value();
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::DeleteSchedule(
    grpc::ServerContext* ctx, const shutter::v1::DeleteScheduleRequest* req,
    shutter::v1::DeleteScheduleResponse*) {
  if (absl::Status d =
          authz_->CheckAdmin(*ctx, Role::kOperator, "DeleteSchedule");
      !d.ok()) {
    return ToGrpcStatus(d);
  }
  return ToGrpcStatus(schedules_->Delete(req->name()));
}

grpc::Status AdminServiceImpl::VerifySnapshot(grpc::ServerContext* ctx,
                                              const VerifySnapshotRequest* req,
                                              VerifySnapshotResponse* resp) {
  if (absl::Status d =
          authz_->CheckAdmin(*ctx, Role::kViewer, "VerifySnapshot");
      !d.ok()) {
    return ToGrpcStatus(d);
  }
  auto id = StartVerify(*coordinator_, *coordinator_->repository(), *req);
  if (!id.ok()) return ToGrpcStatus(id.status());
  resp->set_verify_id(*std::move(id));
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::RemoveNode(grpc::ServerContext* ctx,
                                          const RemoveNodeRequest* req,
                                          RemoveNodeResponse* resp) {
  if (absl::Status d = authz_->CheckAdmin(*ctx, Role::kOperator, "RemoveNode");
      !d.ok()) {
    return ToGrpcStatus(d);
  }
  auto n = registry_->RemoveNode(req->node_id());
  if (!n.ok()) return ToGrpcStatus(n.status());
  if (NodeLimits* limits = coordinator_->limits(); limits != nullptr) {
    limits->Forget(req->node_id());
  }
  *resp->mutable_node() = std::move(n).value();
  return grpc::Status::OK;
}

grpc::Status ControllerServiceImpl::Heartbeat(grpc::ServerContext* ctx,
                                              const HeartbeatRequest* req,
                                              HeartbeatResponse* resp) {
  return HeartbeatOne(*ctx, *req, resp);
}

grpc::Status ControllerServiceImpl::HeartbeatOne(
    const grpc::ServerContextBase& ctx, const HeartbeatRequest& req,
    HeartbeatResponse* resp) {
  if (absl::Status d = authz_->CheckNode(ctx, req.node_id(), "Heartbeat");
      !d.ok()) {
    return ToGrpcStatus(d);
  }
  return ToGrpcStatus(membership_->Heartbeat(req, resp));
}

}  // namespace shutter::controller
