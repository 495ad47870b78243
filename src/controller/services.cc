#include "controller/services.h"

#include "common/rpc.h"
#include "common/text.h"
#include "spdlog/spdlog.h"

namespace shutter::controller {

using namespace shutter::v1;  // NOLINT: service message types

grpc::Status AdminServiceImpl::CreateSnapshot(grpc::ServerContext*,
                                              const CreateSnapshotRequest* req,
                                              CreateSnapshotResponse* resp) {
  auto id = coordinator_->CreateSnapshot(*req);
  if (!id.ok()) {
    // The message may repeat input: escape it for the log.
    spdlog::info("CreateSnapshot rejected: {}",
                 Quote(id.status().ToString(), 1024));
    return ToGrpcStatus(id.status());
  }
  resp->set_snapshot_id(*id);
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::GetSnapshot(grpc::ServerContext*,
                                           const GetSnapshotRequest* req,
                                           GetSnapshotResponse* resp) {
  auto s = coordinator_->GetSnapshotPage(*req);
  if (!s.ok()) return ToGrpcStatus(s.status());
  *resp = std::move(s).value();
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::ListSnapshots(grpc::ServerContext*,
                                             const ListSnapshotsRequest* req,
                                             ListSnapshotsResponse* resp) {
  for (auto& s : coordinator_->ListSnapshots(req->limit(), req->type())) {
    *resp->add_snapshots() = std::move(s);
  }
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::RestoreSnapshot(
    grpc::ServerContext*, const RestoreSnapshotRequest* req,
    RestoreSnapshotResponse* resp) {
  auto r = coordinator_->RestoreSnapshot(*req);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = std::move(r).value();
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::ListNodes(grpc::ServerContext*,
                                         const ListNodesRequest*,
                                         ListNodesResponse* resp) {
  auto stats = coordinator_->NodeStats();
  for (auto& n : registry_->ListNodes()) {
    auto it = stats.find(n.node_id());
    if (it != stats.end()) {
      n.set_checkpoints_in_flight(it->second.in_flight);
      n.set_checkpoints_queued(it->second.queued);
    }
    *resp->add_nodes() = std::move(n);
  }
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::ListPartitions(grpc::ServerContext*,
                                              const ListPartitionsRequest*,
                                              ListPartitionsResponse* resp) {
  for (auto& p : registry_->ListPartitions()) {
    *resp->add_partitions() = std::move(p);
  }
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::CancelSnapshot(grpc::ServerContext*,
                                              const CancelSnapshotRequest* req,
                                              CancelSnapshotResponse* resp) {
  auto s = coordinator_->CancelSnapshot(req->snapshot_id());
  if (!s.ok()) return ToGrpcStatus(s.status());
  *resp->mutable_snapshot() = std::move(*s->mutable_snapshot());
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::DeleteSnapshot(
    grpc::ServerContext*, const shutter::v1::DeleteSnapshotRequest* req,
    shutter::v1::DeleteSnapshotResponse* resp) {
  auto s = coordinator_->DeleteSnapshot(req->snapshot_id(), req->force());
  if (!s.ok()) return ToGrpcStatus(s.status());
  *resp->mutable_snapshot() = std::move(s).value();
  resp->mutable_snapshot()->clear_partitions();
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::PinSnapshot(
    grpc::ServerContext*, const shutter::v1::PinSnapshotRequest* req,
    shutter::v1::PinSnapshotResponse* resp) {
  auto s = coordinator_->PinSnapshot(req->snapshot_id(), req->pinned());
  if (!s.ok()) return ToGrpcStatus(s.status());
  *resp->mutable_snapshot() = std::move(s).value();
  resp->mutable_snapshot()->clear_partitions();
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::ApplyRetention(
    grpc::ServerContext*, const shutter::v1::ApplyRetentionRequest* req,
    shutter::v1::ApplyRetentionResponse* resp) {
  auto r = maintenance_->ApplyRetention(*req);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = std::move(r).value();
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::CollectGarbage(
    grpc::ServerContext*, const shutter::v1::CollectGarbageRequest* req,
    shutter::v1::CollectGarbageResponse* resp) {
  auto r = maintenance_->CollectGarbage(*req);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = std::move(r).value();
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::GetRepositoryStats(
    grpc::ServerContext*, const shutter::v1::GetRepositoryStatsRequest*,
    shutter::v1::GetRepositoryStatsResponse* resp) {
  auto r = maintenance_->GetRepositoryStats();
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = std::move(r).value();
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::CreateSchedule(
    grpc::ServerContext*, const shutter::v1::CreateScheduleRequest* req,
    shutter::v1::CreateScheduleResponse* resp) {
  auto s = schedules_->Create(req->schedule());
  if (!s.ok()) return ToGrpcStatus(s.status());
  *resp->mutable_schedule() = std::move(s).value();
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::ListSchedules(
    grpc::ServerContext*, const shutter::v1::ListSchedulesRequest*,
    shutter::v1::ListSchedulesResponse* resp) {
  for (auto& s : schedules_->List()) *resp->add_schedules() = std::move(s);
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::SetSchedulePaused(
    grpc::ServerContext*, const shutter::v1::SetSchedulePausedRequest* req,
    shutter::v1::SetSchedulePausedResponse* resp) {
  auto s = schedules_->SetPaused(req->name(), req->paused());
  if (!s.ok()) return ToGrpcStatus(s.status());
  *resp->mutable_schedule() = std::move(s).value();
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::DeleteSchedule(
    grpc::ServerContext*, const shutter::v1::DeleteScheduleRequest* req,
    shutter::v1::DeleteScheduleResponse*) {
  return ToGrpcStatus(schedules_->Delete(req->name()));
}

grpc::Status AdminServiceImpl::VerifySnapshot(grpc::ServerContext*,
                                              const VerifySnapshotRequest* req,
                                              VerifySnapshotResponse* resp) {
  auto r = coordinator_->VerifySnapshot(req->snapshot_id());
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = std::move(r).value();
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::RemoveNode(grpc::ServerContext*,
                                          const RemoveNodeRequest* req,
                                          RemoveNodeResponse* resp) {
  auto n = registry_->RemoveNode(req->node_id());
  if (!n.ok()) return ToGrpcStatus(n.status());
  *resp->mutable_node() = std::move(n).value();
  return grpc::Status::OK;
}

grpc::Status ControllerServiceImpl::Heartbeat(grpc::ServerContext*,
                                              const HeartbeatRequest* req,
                                              HeartbeatResponse* resp) {
  bool full_needed = false, capacity_changed = false;
  absl::Status s = registry_->Heartbeat(*req, &full_needed, &capacity_changed);
  if (!s.ok()) return ToGrpcStatus(s);
  resp->set_full_report_needed(full_needed);
  if (full_needed) return grpc::Status::OK;
  // Only when it changed: the scheduler's lock is busy while a large job
  // is queued, and a heartbeat must not wait for it.
  if (capacity_changed) {
    coordinator_->SetNodeCapacity(req->node_id(), req->checkpoint_capacity());
  }
  resp->set_expected_interval_millis(
      absl::ToInt64Milliseconds(expected_interval_));
  resp->set_repository_id(repository_id_);
  return grpc::Status::OK;
}

}  // namespace shutter::controller
