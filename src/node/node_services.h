#ifndef SHUTTER_NODE_NODE_SERVICES_H_
#define SHUTTER_NODE_NODE_SERVICES_H_

#include <memory>

#include "common/metrics.h"
#include "common/rpc.h"
#include "common/security.h"
#include "node/checkpoint_stream.h"
#include "node/checkpoint_taker.h"
#include "node/controller_term.h"
#include "node/node_host.h"
#include "node/partition_restorer.h"
#include "node/partition_verifier.h"
#include "shutter/v1/node.grpc.pb.h"
#include "shutter/v1/partition_data.grpc.pb.h"

namespace shutter::node {

// gRPC NodeService over a CheckpointTaker (callback API: handlers never
// block on checkpoints; the reply is sent when the checkpoint completes).
// Thread-safe. `taker`, `host` and `restorer` must outlive the service;
// without a restorer RestorePartition is UNIMPLEMENTED. With TLS only the
// controller's certificate may call (`authz`); the test hook
// SetPartitionRole is served only with `test_hooks`.
class NodeServiceImpl final : public shutter::v1::NodeService::CallbackService {
 public:
  NodeServiceImpl(
      CheckpointTaker* taker, NodeHost* host,
      PartitionRestorer* restorer = nullptr,
      std::shared_ptr<const Authorizer> authz = Authorizer::AllowAll(),
      bool test_hooks = true, metrics::Registry* metrics = nullptr)
      : taker_(taker),
        host_(host),
        restorer_(restorer),
        authz_(std::move(authz)),
        test_hooks_(test_hooks),
        metrics_(metrics) {
    if (metrics_ != nullptr) InitMetrics(metrics_);
  }

  // Serves VerifyPartition with `verifier` (not owned; null: UNIMPLEMENTED).
  // Call before serving.
  void set_verifier(PartitionVerifier* verifier) { verifier_ = verifier; }
  // Refuses requests of controller terms older than `term`'s newest (not
  // owned; null: every term is taken). Call before serving.
  void set_controller_term(ControllerTerm* term) { controller_term_ = term; }

  // Creates every checkpoint and restore metric's label combination at 0
  // (so a first failure is an increase, and dashboards show zeros).
  static void InitMetrics(metrics::Registry* m);

  grpc::ServerUnaryReactor* CreateCheckpoint(
      grpc::CallbackServerContext* ctx,
      const shutter::v1::CreateCheckpointRequest* request,
      shutter::v1::CreateCheckpointResponse* response) override;

  // Each request as CreateCheckpoint (node.proto); counted in
  // stream_calls() until answered.
  grpc::ServerBidiReactor<shutter::v1::CheckpointStreamRequest,
                          shutter::v1::CheckpointStreamResponse>*
  CheckpointStream(grpc::CallbackServerContext* ctx) override;

  // The checkpoints asked over streams and not answered yet (shutdown
  // waits for them as for unary calls).
  const CallTracker& stream_calls() const { return *stream_calls_; }

  grpc::ServerUnaryReactor* GetNodeStats(
      grpc::CallbackServerContext* ctx,
      const shutter::v1::GetNodeStatsRequest* request,
      shutter::v1::GetNodeStatsResponse* response) override;

  grpc::ServerUnaryReactor* CancelCheckpoints(
      grpc::CallbackServerContext* ctx,
      const shutter::v1::CancelCheckpointsRequest* request,
      shutter::v1::CancelCheckpointsResponse* response) override;

  grpc::ServerUnaryReactor* SetPartitionRole(
      grpc::CallbackServerContext* ctx,
      const shutter::v1::SetPartitionRoleRequest* request,
      shutter::v1::SetPartitionRoleResponse* response) override;

  grpc::ServerUnaryReactor* VerifyPartition(
      grpc::CallbackServerContext* ctx,
      const shutter::v1::VerifyPartitionRequest* request,
      shutter::v1::VerifyPartitionResponse* response) override;

  grpc::ServerUnaryReactor* CancelVerifies(
      grpc::CallbackServerContext* ctx,
      const shutter::v1::CancelVerifiesRequest* request,
      shutter::v1::CancelVerifiesResponse* response) override;

  grpc::ServerUnaryReactor* RestorePartition(
      grpc::CallbackServerContext* ctx,
      const shutter::v1::RestorePartitionRequest* request,
      shutter::v1::RestorePartitionResponse* response) override;

  grpc::ServerUnaryReactor* CancelRestores(
      grpc::CallbackServerContext* ctx,
      const shutter::v1::CancelRestoresRequest* request,
      shutter::v1::CancelRestoresResponse* response) override;

 private:
  // OK, or STALE_CONTROLLER for a deposed controller's request.
  absl::Status AdmitTerm(uint64_t term, absl::string_view what);
  // One checkpoint request, unary or streamed: the term admitted, the
  // taker's answer counted in the metrics and passed to `reply`.
  void TakeCheckpoint(const shutter::v1::CreateCheckpointRequest& request,
                      CheckpointReply reply);

  CheckpointTaker* const taker_;
  NodeHost* const host_;
  PartitionRestorer* const restorer_;
  PartitionVerifier* verifier_ = nullptr;
  ControllerTerm* controller_term_ = nullptr;
  const std::shared_ptr<const Authorizer> authz_;
  const bool test_hooks_;
  metrics::Registry* const metrics_;  // may be null
  const std::shared_ptr<CallTracker> stream_calls_ =
      std::make_shared<CallTracker>();
};

// gRPC PartitionData over a NodeHost (sync API: RocksDB calls block).
// With TLS, callers need a certificate from the CA. Thread-safe. `host`
// must outlive the service.
class PartitionDataImpl final : public shutter::v1::PartitionData::Service {
 public:
  explicit PartitionDataImpl(
      NodeHost* host,
      std::shared_ptr<const Authorizer> authz = Authorizer::AllowAll(),
      metrics::Registry* metrics = nullptr)
      : host_(host),
        authz_(std::move(authz)),
        write_seconds_(
            metrics == nullptr
                ? nullptr
                : metrics->GetHistogram(
                      "shutter_node_write_seconds",
                      "Latency of the partitions' own (foreground) writes "
                      "through the data plane")) {}

  grpc::Status Write(grpc::ServerContext* ctx,
                     const shutter::v1::WriteRequest* request,
                     shutter::v1::WriteResponse* response) override;
  grpc::Status Get(grpc::ServerContext* ctx,
                   const shutter::v1::GetRequest* request,
                   shutter::v1::GetResponse* response) override;
  grpc::Status Scan(grpc::ServerContext* ctx,
                    const shutter::v1::ScanRequest* request,
                    shutter::v1::ScanResponse* response) override;

 private:
  NodeHost* const host_;
  const std::shared_ptr<const Authorizer> authz_;
  // Looked up once: Write is the hot path. Null without metrics.
  metrics::Histogram* const write_seconds_;
};

}  // namespace shutter::node

#endif  // SHUTTER_NODE_NODE_SERVICES_H_
