#include "node/node_services.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/error_reason.h"
#include "common/ids.h"
#include "common/rpc.h"

namespace shutter::node {

using namespace shutter::v1;  // NOLINT: service message types

namespace {
// A reactor finished at once with `s` (answers known before any work).
grpc::ServerUnaryReactor* Finished(grpc::CallbackServerContext* ctx,
                                   const grpc::Status& s) {
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(s);
  return r;
}

// The node's checkpoint and restore metric families (one help text each).
constexpr char kCheckpoints[] = "shutter_node_checkpoints_total";
constexpr char kCheckpointsHelp[] = "Checkpoint requests answered, by outcome";
constexpr char kCheckpointPhase[] = "shutter_node_checkpoint_phase_seconds";
constexpr char kCheckpointPhaseHelp[] =
    "Time per checkpoint phase: checkpoint (flush and hard links), publish "
    "(hash, upload, manifest)";
constexpr char kPublished[] = "shutter_node_published_bytes_total";
constexpr char kPublishedHelp[] =
    "Bytes uploaded to the repository by checkpoints";
constexpr char kReused[] = "shutter_node_reused_bytes_total";
constexpr char kReusedHelp[] =
    "Bytes not uploaded because the repository held them already";
constexpr char kPublishRead[] = "shutter_node_publish_read_bytes_total";
constexpr char kPublishReadHelp[] =
    "Bytes read from checkpoint files to publish them (hashing, uploading)";
constexpr char kRestores[] = "shutter_node_restores_total";
constexpr char kRestoresHelp[] = "Restore requests answered, by outcome";
constexpr char kRestorePhase[] = "shutter_node_restore_phase_seconds";
constexpr char kRestorePhaseHelp[] =
    "Time per restore phase: fetch (download and check), swap (close, "
    "exchange, reopen, leadership)";
constexpr char kRestored[] = "shutter_node_restored_bytes_total";
constexpr char kRestoredHelp[] = "Bytes downloaded by restores";

void RecordCheckpoint(metrics::Registry* m,
                      const absl::StatusOr<CreateCheckpointResponse>& r) {
  const char* outcome = !r.ok()                  ? "failed"
                        : r->already_published() ? "already_published"
                                                 : "published";
  m->GetCounter(kCheckpoints, kCheckpointsHelp, {{"outcome", outcome}})->Inc();
  if (!r.ok() || r->already_published()) return;
  m->GetHistogram(kCheckpointPhase, kCheckpointPhaseHelp,
                  {{"phase", "checkpoint"}})
      ->Observe(r->checkpoint_millis() / 1e3);
  m->GetHistogram(kCheckpointPhase, kCheckpointPhaseHelp,
                  {{"phase", "publish"}})
      ->Observe(r->publish_millis() / 1e3);
  m->GetCounter(kPublished, kPublishedHelp)
      ->Inc(static_cast<double>(r->uploaded_bytes()));
  m->GetCounter(kReused, kReusedHelp)
      ->Inc(static_cast<double>(r->reused_bytes()));
  m->GetCounter(kPublishRead, kPublishReadHelp)
      ->Inc(static_cast<double>(r->local_bytes_read()));
}

void RecordRestore(metrics::Registry* m,
                   const absl::StatusOr<RestorePartitionResponse>& r) {
  const char* outcome = !r.ok()                 ? "failed"
                        : r->already_restored() ? "already_restored"
                                                : "restored";
  m->GetCounter(kRestores, kRestoresHelp, {{"outcome", outcome}})->Inc();
  if (!r.ok() || r->already_restored()) return;
  m->GetHistogram(kRestorePhase, kRestorePhaseHelp, {{"phase", "fetch"}})
      ->Observe(r->fetch_millis() / 1e3);
  m->GetHistogram(kRestorePhase, kRestorePhaseHelp, {{"phase", "swap"}})
      ->Observe(r->swap_millis() / 1e3);
  m->GetCounter(kRestored, kRestoredHelp)
      ->Inc(static_cast<double>(r->manifest().total_bytes()));
}
}  // namespace

absl::Status NodeServiceImpl::AdmitTerm(uint64_t term, absl::string_view what) {
  if (controller_term_ == nullptr) return absl::OkStatus();
  return controller_term_->Admit(term, what);
}

void NodeServiceImpl::InitMetrics(metrics::Registry* m) {
  for (const char* o : {"published", "already_published", "failed"}) {
    m->GetCounter(kCheckpoints, kCheckpointsHelp, {{"outcome", o}});
  }
  for (const char* phase : {"checkpoint", "publish"}) {
    m->GetHistogram(kCheckpointPhase, kCheckpointPhaseHelp, {{"phase", phase}});
  }
  m->GetCounter(kPublished, kPublishedHelp);
  m->GetCounter(kReused, kReusedHelp);
  for (const char* o : {"restored", "already_restored", "failed"}) {
    m->GetCounter(kRestores, kRestoresHelp, {{"outcome", o}});
  }
  for (const char* phase : {"fetch", "swap"}) {
    m->GetHistogram(kRestorePhase, kRestorePhaseHelp, {{"phase", phase}});
  }
  m->GetCounter(kRestored, kRestoredHelp);
}

grpc::ServerUnaryReactor* NodeServiceImpl::CreateCheckpoint(
    grpc::CallbackServerContext* ctx, const CreateCheckpointRequest* request,
    CreateCheckpointResponse* response) {
  if (absl::Status d = authz_->CheckController(*ctx, "CreateCheckpoint");
      !d.ok()) {
    return Finished(ctx, ToGrpcStatus(d));
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  TakeCheckpoint(*request, [ctx, reactor, response](
                               absl::StatusOr<CreateCheckpointResponse> r) {
    if (r.ok()) *response = std::move(r).value();
    // The reason travels as trailing metadata (node.proto).
    reactor->Finish(ToGrpcStatus(r.status(), ctx));
  });
  return reactor;
}

void NodeServiceImpl::TakeCheckpoint(const CreateCheckpointRequest& request,
                                     CheckpointReply reply) {
  if (absl::Status t = AdmitTerm(request.controller_term(), "CreateCheckpoint");
      !t.ok()) {
    std::move(reply)(std::move(t));
    return;
  }
  taker_->CreateCheckpoint(
      request, [reply = std::move(reply), m = metrics_](
                   absl::StatusOr<CreateCheckpointResponse> r) mutable {
        if (m != nullptr) RecordCheckpoint(m, r);
        std::move(reply)(std::move(r));
      });
}

grpc::ServerBidiReactor<CheckpointStreamRequest, CheckpointStreamResponse>*
NodeServiceImpl::CheckpointStream(grpc::CallbackServerContext* ctx) {
  if (absl::Status d = authz_->CheckController(*ctx, "CheckpointStream");
      !d.ok()) {
    return RefuseCheckpointStream(ToGrpcStatus(d));
  }
  return ServeCheckpointStream(
      [this](const CreateCheckpointRequest& request, CheckpointReply reply) {
        TakeCheckpoint(request, std::move(reply));
      },
      stream_calls_);
}

grpc::ServerUnaryReactor* NodeServiceImpl::GetNodeStats(
    grpc::CallbackServerContext* ctx, const GetNodeStatsRequest* request,
    GetNodeStatsResponse* response) {
  if (absl::Status d = authz_->CheckController(*ctx, "GetNodeStats"); !d.ok()) {
    return Finished(ctx, ToGrpcStatus(d));
  }
  CheckpointTaker::Stats s = taker_->GetStats();
  response->set_node_id(taker_->options().node_id);
  response->set_checkpoint_capacity(taker_->options().capacity);
  response->set_checkpoints_in_flight(s.in_flight);
  response->set_checkpoints_running(s.running);
  response->set_checkpoint_limit(s.limit);
  response->set_peak_checkpoints_running(s.peak_running);
  response->set_peak_checkpoints_in_flight(s.peak_in_flight);
  response->set_checkpoints_published(s.published);
  response->set_checkpoints_failed(s.failed);
  response->set_answered_already_published(s.already_published);
  response->set_joined_in_progress(s.joined);
  response->set_publish_bytes_read(s.publish_bytes_read);
  response->set_checkpoint_phase_millis(s.checkpoint_phase_millis);
  response->set_publish_phase_millis(s.publish_phase_millis);
  response->set_write_stalls(host_->write_stalls().stalls.load());
  response->set_write_stall_micros(
      static_cast<int64_t>(host_->write_stalls().stalled_micros.load()));
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* NodeServiceImpl::CancelCheckpoints(
    grpc::CallbackServerContext* ctx, const CancelCheckpointsRequest* request,
    CancelCheckpointsResponse* response) {
  if (absl::Status d = authz_->CheckController(*ctx, "CancelCheckpoints");
      !d.ok()) {
    return Finished(ctx, ToGrpcStatus(d));
  }
  if (absl::Status t =
          AdmitTerm(request->controller_term(), "CancelCheckpoints");
      !t.ok()) {
    return Finished(ctx, ToGrpcStatus(t, ctx));
  }

  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::Status valid = CheckSafeId("snapshot_id", request->snapshot_id());
  if (!valid.ok()) {
    reactor->Finish(
        ToGrpcStatus(WithReason(valid, ErrorReason::kInvalidRequest), ctx));
    return reactor;
  }
  taker_->CancelSnapshot(request->snapshot_id());
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* NodeServiceImpl::SetPartitionRole(
    grpc::CallbackServerContext* ctx, const SetPartitionRoleRequest* request,
    SetPartitionRoleResponse* response) {
  if (absl::Status d = authz_->CheckController(*ctx, "SetPartitionRole");
      !d.ok()) {
    return Finished(ctx, ToGrpcStatus(d));
  }
  if (!test_hooks_) {
    return Finished(ctx, grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                                      "SetPartitionRole is a test hook, served "
                                      "only with --enable-data-plane"));
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  auto acquired = host_->Acquire(request->partition_id());
  if (!acquired.ok()) {
    reactor->Finish(ToGrpcStatus(acquired.status()));
    return reactor;
  }
  NodeHost::StoreRef store = *std::move(acquired);
  if (request->role() == PARTITION_ROLE_LEADER) {
    // A small synced RocksDB write: acceptable on the handler thread.
    auto epoch = store->TakeLeadership(request->min_epoch());
    if (!epoch.ok()) {
      reactor->Finish(ToGrpcStatus(epoch.status()));
      return reactor;
    }
  } else {
    store->StepDown();
  }
  host_->NotifyRolesChanged();  // reported at once, not at the next tick
  response->set_leader_epoch(store->meta().leader_epoch);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* NodeServiceImpl::RestorePartition(
    grpc::CallbackServerContext* ctx, const RestorePartitionRequest* request,
    RestorePartitionResponse* response) {
  if (absl::Status d = authz_->CheckController(*ctx, "RestorePartition");
      !d.ok()) {
    return Finished(ctx, ToGrpcStatus(d));
  }
  if (absl::Status t =
          AdmitTerm(request->controller_term(), "RestorePartition");
      !t.ok()) {
    return Finished(ctx, ToGrpcStatus(t, ctx));
  }

  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (restorer_ == nullptr) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                                 "this node does not restore partitions"));
    return reactor;
  }
  restorer_->Restore(*request, [ctx, reactor, response, m = metrics_](
                                   absl::StatusOr<RestorePartitionResponse> r) {
    if (m != nullptr) RecordRestore(m, r);
    if (r.ok()) *response = std::move(r).value();
    reactor->Finish(ToGrpcStatus(r.status(), ctx));
  });
  return reactor;
}

grpc::ServerUnaryReactor* NodeServiceImpl::CancelRestores(
    grpc::CallbackServerContext* ctx, const CancelRestoresRequest* request,
    CancelRestoresResponse* response) {
  if (absl::Status d = authz_->CheckController(*ctx, "CancelRestores");
      !d.ok()) {
    return Finished(ctx, ToGrpcStatus(d));
  }
  if (absl::Status t = AdmitTerm(request->controller_term(), "CancelRestores");
      !t.ok()) {
    return Finished(ctx, ToGrpcStatus(t, ctx));
  }

  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::Status valid = CheckSafeId("restore_id", request->restore_id());
  if (!valid.ok()) {
    reactor->Finish(
        ToGrpcStatus(WithReason(valid, ErrorReason::kInvalidRequest), ctx));
    return reactor;
  }
  if (restorer_ != nullptr) restorer_->Cancel(request->restore_id());
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* NodeServiceImpl::VerifyPartition(
    grpc::CallbackServerContext* ctx, const VerifyPartitionRequest* request,
    VerifyPartitionResponse* response) {
  if (absl::Status d = authz_->CheckController(*ctx, "VerifyPartition");
      !d.ok()) {
    return Finished(ctx, ToGrpcStatus(d));
  }
  if (absl::Status t = AdmitTerm(request->controller_term(), "VerifyPartition");
      !t.ok()) {
    return Finished(ctx, ToGrpcStatus(t, ctx));
  }

  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (verifier_ == nullptr) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                                 "this node does not verify partitions"));
    return reactor;
  }
  verifier_->Verify(*request, [ctx, reactor, response](
                                  absl::StatusOr<VerifyPartitionResponse> r) {
    if (r.ok()) *response = std::move(r).value();
    reactor->Finish(ToGrpcStatus(r.status(), ctx));
  });
  return reactor;
}

grpc::ServerUnaryReactor* NodeServiceImpl::CancelVerifies(
    grpc::CallbackServerContext* ctx, const CancelVerifiesRequest* request,
    CancelVerifiesResponse* response) {
  if (absl::Status d = authz_->CheckController(*ctx, "CancelVerifies");
      !d.ok()) {
    return Finished(ctx, ToGrpcStatus(d));
  }
  if (absl::Status t = AdmitTerm(request->controller_term(), "CancelVerifies");
      !t.ok()) {
    return Finished(ctx, ToGrpcStatus(t, ctx));
  }

  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::Status valid = CheckSafeId("verify_id", request->verify_id());
  if (!valid.ok()) {
    reactor->Finish(
        ToGrpcStatus(WithReason(valid, ErrorReason::kInvalidRequest), ctx));
    return reactor;
  }
  if (verifier_ != nullptr) verifier_->Cancel(request->verify_id());
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

namespace {
// Get limits (partition_data.proto).
constexpr size_t kMaxGetKeys = 1000;
constexpr size_t kMaxGetBytes = 3 << 20;

absl::StatusOr<NodeHost::StoreRef> FindOrError(NodeHost* host, uint32_t id) {
  return host->Acquire(id);
}
}  // namespace

grpc::Status PartitionDataImpl::Write(grpc::ServerContext* ctx,
                                      const WriteRequest* request,
                                      WriteResponse* response) {
  if (absl::Status d = authz_->CheckAnyPeer(*ctx, "Write"); !d.ok()) {
    return ToGrpcStatus(d);
  }
  auto store = FindOrError(host_, request->partition_id());
  if (!store.ok()) return ToGrpcStatus(store.status());
  std::vector<partition::Mutation> muts;
  muts.reserve(request->mutations_size());
  for (const Mutation& m : request->mutations()) {
    partition::Mutation pm;
    if (m.has_put()) {
      pm.op = partition::Mutation::Op::kPut;
      pm.key = m.put().key();
      pm.value = m.put().value();
    } else if (m.has_delete_()) {
      pm.op = partition::Mutation::Op::kDelete;
      pm.key = m.delete_().key();
    } else {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "mutation with neither put nor delete");
    }
    muts.push_back(std::move(pm));
  }
  const absl::Time start = absl::Now();
  auto idx = (*store)->Write(muts, request->sync(), request->leader_epoch());
  if (write_seconds_ != nullptr && idx.ok()) {
    write_seconds_->Observe(absl::ToDoubleSeconds(absl::Now() - start));
  }
  if (!idx.ok()) return ToGrpcStatus(idx.status());
  response->set_applied_index(*idx);
  response->set_leader_epoch((*store)->meta().leader_epoch);
  return grpc::Status::OK;
}

grpc::Status PartitionDataImpl::Get(grpc::ServerContext* ctx,
                                    const GetRequest* request,
                                    GetResponse* response) {
  if (absl::Status d = authz_->CheckAnyPeer(*ctx, "Get"); !d.ok()) {
    return ToGrpcStatus(d);
  }
  auto store = FindOrError(host_, request->partition_id());
  if (!store.ok()) return ToGrpcStatus(store.status());
  if (static_cast<size_t>(request->keys_size()) > kMaxGetKeys) {
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("Get asks for ", request->keys_size(),
                     " keys; the limit is ", kMaxGetKeys, " per call"));
  }
  size_t bytes = 0;
  for (const std::string& key : request->keys()) {
    GetResult* r = response->add_results();
    auto v = (*store)->Get(key);
    if (v.ok()) {
      bytes += v->size();
      if (bytes > kMaxGetBytes) {
        return grpc::Status(
            grpc::StatusCode::INVALID_ARGUMENT,
            absl::StrCat("the values of these ", request->keys_size(),
                         " keys add up to more than ", kMaxGetBytes,
                         " bytes, the most one answer carries; ask for "
                         "fewer keys per call"));
      }
      r->set_found(true);
      r->set_value(std::move(v).value());
    } else if (!absl::IsNotFound(v.status())) {
      return ToGrpcStatus(v.status());
    }
  }
  return grpc::Status::OK;
}

grpc::Status PartitionDataImpl::Scan(grpc::ServerContext* ctx,
                                     const ScanRequest* request,
                                     ScanResponse* response) {
  if (absl::Status d = authz_->CheckAnyPeer(*ctx, "Scan"); !d.ok()) {
    return ToGrpcStatus(d);
  }
  auto store = FindOrError(host_, request->partition_id());
  if (!store.ok()) return ToGrpcStatus(store.status());
  size_t limit = request->limit() == 0 ? 1000 : request->limit();
  limit = std::min<size_t>(limit, 10000);
  std::vector<std::pair<std::string, std::string>> out;
  std::string next;
  size_t max_bytes = request->max_bytes() == 0
                         ? partition::kMaxScanPageBytes
                         : std::min<size_t>(request->max_bytes(),
                                            partition::kMaxScanPageBytes);
  absl::Status s = (*store)->Scan(request->start_key(), request->end_key(),
                                  limit, max_bytes, &out, &next);
  if (!s.ok()) return ToGrpcStatus(s);
  for (auto& [k, v] : out) {
    KeyValue* kv = response->add_entries();
    kv->set_key(std::move(k));
    kv->set_value(std::move(v));
  }
  response->set_next_key(next);
  return grpc::Status::OK;
}

}  // namespace shutter::node
